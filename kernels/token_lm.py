"""Back-off n-gram scores over token pieces: the typed face of the C++ TokenLm.

The beam search needs, every encoder frame, a vocabulary of log-probabilities per
hypothesis; the C++ walk costs about a microsecond a context, where the same walk in
numpy cost tens (one array call per order). Tables are handed over once and owned by
the native object; ``tables`` gives copies back (for saving a model).

This module is on the device path: it imports numpy and the native module, never numba.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from framegate.kernels import _native

Table = tuple[np.ndarray, np.ndarray, np.ndarray]


class NativeTokenLm:
    """Scores of every id (pieces, then <s> and </s>) after each of several contexts.

    `tables` gives orders 1..n in turn, each the n-grams' (keys int64 strictly increasing, ids
    as digits in base vocab_size + 2; logp float32; backoff float32, empty for the highest
    order), natural logs. Inconsistent tables or a context id outside 0..vocab_size + 1 raise
    ValueError."""

    def __init__(self, tables: Iterable[Table], vocab_size: int) -> None:
        # One order at a time: a generator's arrays are freed as soon as they are copied.
        self._lm = _native.TokenLm((tuple(np.ascontiguousarray(a) for a in t) for t in tables), vocab_size)

    @property
    def order(self) -> int:
        return self._lm.order

    def scores_batch(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(contexts), vocab_size + 2) float32, one row per context (oldest id first)."""
        return self._lm.scores_batch(contexts)

    def tables(self) -> list[Table]:
        return [tuple(t) for t in self._lm.tables()]
