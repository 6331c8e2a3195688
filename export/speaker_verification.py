"""Verification scoring shared by speaker training and the fairness reports (numpy only).

Trials are all pairs of distinct utterances; the score is the cosine similarity of their
embeddings; a target trial is a pair spoken by the same voice. The equal-error rate is
where the false-accept rate over non-target trials meets the false-reject rate over target
trials, read off the exact ROC (linear interpolation between its two nearest points).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def trial_scores(embeddings: np.ndarray, speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(cosine score, is-target) for every pair i < j of rows of `embeddings` (n, dim)."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    i, j = np.triu_indices(len(unit), k=1)
    labels = np.asarray(speakers)
    return np.einsum("nd,nd->n", unit[i], unit[j]), labels[i] == labels[j]


def equal_error_rate(scores: np.ndarray, target: np.ndarray) -> float:
    """EER of `scores` (higher = same voice) against boolean `target`; needs both kinds of trial."""
    scores, target = np.asarray(scores, dtype=np.float64), np.asarray(target, dtype=bool)
    n_target, n_non = int(target.sum()), int((~target).sum())
    if n_target == 0 or n_non == 0:
        raise ValueError(f"EER needs target and non-target trials, got {n_target} and {n_non}")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_target = scores[order], target[order]
    # Thresholds between distinct scores: accept everything scoring >= the threshold.
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    accepted_targets = np.cumsum(sorted_target)[last_of_tie]
    accepted_non = np.cumsum(~sorted_target)[last_of_tie]
    frr = np.r_[1.0, 1.0 - accepted_targets / n_target]
    far = np.r_[0.0, accepted_non / n_non]
    k = int(np.argmax(far >= frr))  # far rises, frr falls: the first crossing
    if k == 0:
        return float(far[0])
    d_prev, d_here = frr[k - 1] - far[k - 1], far[k] - frr[k]
    t = d_prev / (d_prev + d_here) if d_prev + d_here > 0 else 0.0
    return float(far[k - 1] + t * (far[k] - far[k - 1]))
