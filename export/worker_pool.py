"""Process pools whose workers start clean, whoever the caller is.

A plain fork copies the caller's memory, including the locks of ONNX Runtime, torch (OpenMP) and
numba threads in whatever state they were at that instant; a worker that then takes one (piper
synthesizes with ONNX Runtime) can wait forever. A test session or a notebook has run all of them
before it builds a corpus or a feature cache. Workers forked from a fresh server process have
only what its preloaded modules set up.
"""
from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def clean_context(preload: str) -> BaseContext:
    """A forkserver context whose server imports `preload` (the module of the workers' functions)
    once, so each worker starts in milliseconds instead of importing it again."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])
    return context
