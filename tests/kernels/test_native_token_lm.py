"""The C++ TokenLm at the binding edge: arrays checked, ids bounded, tables given back intact.

Its scores against an independent back-off walk are tests/export/test_token_lm.py's; its
hand-worked cases and refusals in C++ are cpp/tests/token_lm_test.cc's (also under ASan)."""
from __future__ import annotations

import numpy as np
import pytest

from framegate.kernels.token_lm import NativeTokenLm

VOCAB = 3  # pieces 0..2, <s> = 3, </s> = 4, keys in base 5


def _tables() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(np.array([0, 1, 3, 4]), np.array([-1.0, -2.0, -99.0, -3.0], np.float32),
             np.array([-0.5, -0.25, -0.75, 0.0], np.float32)),
            (np.array([1, 2, 15]), np.array([-0.1, -0.2, -0.3], np.float32), np.zeros(0, np.float32))]


def test_scores_batch_gives_one_row_per_context_and_tables_come_back_intact() -> None:
    lm = NativeTokenLm(_tables(), VOCAB)
    scores = lm.scores_batch([(), (0,), (3, 0)])
    assert scores.shape == (3, VOCAB + 2) and scores.dtype == np.float32 and lm.order == 2
    np.testing.assert_array_equal(scores[0], [-1.0, -2.0, -3.0, -99.0, -3.0])
    after_0 = np.float32([-1.0, -2.0, -3.0, -99.0, -3.0]) + np.float32(-0.5)  # 0's back-off on every unigram,
    after_0[1:3] = np.float32([-0.1, -0.2])  # then its bigrams (0 1) and (0 2)
    np.testing.assert_array_equal(scores[1], after_0)
    np.testing.assert_array_equal(scores[2], scores[1])  # only the last order - 1 ids count
    assert lm.scores_batch([]).shape == (0, VOCAB + 2)
    for given, back in zip(_tables(), lm.tables()):
        for a, b in zip(given, back):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("broken, message", [
    (lambda t: [(t[0][0].astype(np.float64), *t[0][1:]), t[1]], "1-gram keys must be a C-contiguous int64"),
    (lambda t: [t[0], (t[1][0], t[1][1][:2], t[1][2])], "lengths disagree"),
    (lambda t: [t[0], (t[1][0][::-1].copy(), *t[1][1:])], "increase strictly"),
    (lambda t: [t[0][:2]], r"\(keys, logp, backoff\)"),
])
def test_inconsistent_tables_are_a_value_error_naming_the_problem(broken, message) -> None:
    with pytest.raises(ValueError, match=message):
        NativeTokenLm(broken(_tables()), VOCAB)


def test_context_ids_outside_the_vocabulary_are_refused() -> None:
    lm = NativeTokenLm(_tables(), VOCAB)
    for context in [(5,), (0, -1)]:
        with pytest.raises(ValueError, match="outside 0..4"):
            lm.scores_batch([context])
    with pytest.raises(TypeError):
        lm.scores_batch([("a",)])
