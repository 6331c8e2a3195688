"""Feeding a stream at real-time pace: true wall-clock pace or a virtual clock.

A live source delivers block k (of `block_samples`) when its last sample has been
spoken: at `arrival_k = end_sample_k / 16000` seconds after the stream starts. One
engine thread serves it: call k (accept_waveform + decode) starts at
`max(arrival_k, finish_{k-1})` and ends after its compute time. The result a user sees
changes only when a call ends, so every event is stamped with that call's end.

`virtual` applies that recurrence to compute times measured back to back (no sleeping),
so a test set runs in its compute time instead of its duration. `real` sleeps until each
arrival and stamps events with the wall clock. The two differ only in what waiting does
to compute (caches and clock frequency after idling, wake-up jitter); the latency
benchmark runs a few utterances both ways and reports the difference.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framegate.engine.recognizer import Recognizer
from framegate.engine.stream import WORD_MARKER

RATE = 16000


class WindowCountingRecognizer(Recognizer):
    """A Recognizer that counts encoder windows, so compute can be attributed to chunks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.windows = 0

    def encode_windows(self, windows: list[np.ndarray], state: Any) -> tuple[list[np.ndarray], Any]:
        self.windows += len(windows)
        return super().encode_windows(windows, state)


@dataclass
class PacedRun:
    """Times in seconds from the stream's start (audio time = wall time at real pace).

    `last_word_s` is when the result started to show the final result's last word as its own
    last word for good (the issue's "first holds the utterance's last word"; greedy partials
    only grow, so for greedy search that is when the last word's last piece appeared).
    `last_token_s` is when the whole result stopped changing: later than `last_word_s` when a
    beam search still revises earlier words after the last one is shown. `endpoint_s` is the first endpoint at
    or after `last_token_s`. The `*_arrival_s` times are the arrival of the block whose call
    showed it: the moment minus its arrival is compute and queueing.
    """

    tokens: list[str]
    first_token_s: float | None
    last_word_s: float | None
    last_word_arrival_s: float | None
    last_token_s: float | None
    last_token_arrival_s: float | None
    endpoint_s: float | None
    chunk_compute_s: list[float] = field(default_factory=list)
    compute_s: float = 0.0


def run_paced(recognizer: WindowCountingRecognizer, samples_16k: np.ndarray, block_samples: int,
              real_time: bool) -> PacedRun:
    """Feed `samples_16k` block by block at real-time pace; the source never finishes
    (audio continues after speech), so the result is whatever the live stream shows."""
    stream = recognizer.create_stream()
    history: list[tuple[float, float, list[str], bool]] = []  # (call end, block arrival, tokens, endpoint)
    chunk_compute: list[float] = []
    pending = total = finish = 0.0
    t0 = time.perf_counter()
    for start in range(0, len(samples_16k), block_samples):
        block = samples_16k[start:start + block_samples]
        arrival = (start + len(block)) / RATE
        if real_time:
            wait = t0 + arrival - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        windows_before = recognizer.windows
        c0 = time.perf_counter()
        stream.accept_waveform(RATE, block)
        recognizer.decode(stream)
        c1 = time.perf_counter()
        compute = c1 - c0
        finish = c1 - t0 if real_time else max(arrival, finish) + compute
        total += compute
        pending += compute
        new_windows = recognizer.windows - windows_before
        if new_windows:  # the compute since the last window, shared by the windows it produced
            chunk_compute.extend([pending / new_windows] * new_windows)
            pending = 0.0
        history.append((finish, arrival, stream.result.tokens, stream.is_endpoint))
    tokens = stream.result.tokens
    first = next((h for h in history if h[2]), None)
    last = _held_from(history, lambda shown: shown == tokens) if tokens else None
    word = last_word(tokens)
    last_word_call = _held_from(history, lambda shown: last_word(shown) == word) if word else None
    endpoint = None
    if last is not None:
        after = history[history.index(last):]
        endpoint = next((h for h in after if h[3]), None)
    return PacedRun(tokens=list(tokens), first_token_s=first[0] if first else None,
                    last_word_s=last_word_call[0] if last_word_call else None,
                    last_word_arrival_s=last_word_call[1] if last_word_call else None,
                    last_token_s=last[0] if last else None, last_token_arrival_s=last[1] if last else None,
                    endpoint_s=endpoint[0] if endpoint else None, chunk_compute_s=chunk_compute, compute_s=total)


def last_word(tokens: list[str]) -> str | None:
    """The last whole word of a piece sequence (None if it has no word)."""
    words = "".join(tokens).replace(WORD_MARKER, " ").split()
    return words[-1] if words else None


def _held_from(history: list[tuple], holds) -> tuple | None:
    """The first call from which every later result satisfies `holds`, or None."""
    held = None
    for h in reversed(history):
        if not holds(h[2]):
            break
        held = h
    return held
