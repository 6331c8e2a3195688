"""Report plumbing shared by every benchmark: schema'd JSON, a PNG beside it, WER intervals.

DESIGN.md's CLI conventions: reports carry a `schema` version, times are seconds unless a
key says `_ms`, and WER comparisons carry a paired-bootstrap 95 % interval.
"""
from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import jiwer
import numpy as np


def machine_info() -> dict:
    import os

    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_average_1min": round(os.getloadavg()[0], 2)}


def write_report(path: Path, report: dict, figure) -> Path:
    """Write `report` as JSON at `path` and `figure` (matplotlib) as a PNG beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    png = path.with_suffix(".png")
    figure.savefig(png, dpi=110, bbox_inches="tight")
    return png


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance (errors, reference words), the units every WER and interval is built from."""
    errors, words = np.zeros(len(refs)), np.zeros(len(refs))
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        ref_words = ref.split()
        words[i] = len(ref_words)
        if not ref_words:
            errors[i] = len(hyp.split())  # anything said over silence is an insertion
            continue
        out = jiwer.process_words(ref, hyp if hyp.strip() else "")
        errors[i] = out.substitutions + out.deletions + out.insertions
    return errors, words


def bootstrap_interval(x: np.ndarray, stat: Callable[[np.ndarray], float], rounds: int = 2000,
                       seed: int = 0) -> list[float]:
    """95 % bootstrap interval of `stat` over the rows of `x` (one row per utterance; pairs of
    measurements stay together in a row)."""
    idx = np.random.default_rng(seed).integers(0, len(x), size=(rounds, len(x)))
    lo, hi = np.percentile([stat(x[i]) for i in idx], [2.5, 97.5])
    return [float(lo), float(hi)]


def wer_interval(errors: np.ndarray, words: np.ndarray, seed: int = 0, rounds: int = 2000
                 ) -> tuple[float, float, float]:
    """WER and its 95 % bootstrap interval over utterances."""
    wer = float(errors.sum() / max(words.sum(), 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(errors), size=(rounds, len(errors)))
    samples = errors[idx].sum(1) / np.maximum(words[idx].sum(1), 1)
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return wer, float(lo), float(hi)


def paired_wer_difference(errors_a: np.ndarray, errors_b: np.ndarray, words: np.ndarray, seed: int = 0,
                          rounds: int = 2000) -> dict:
    """WER(a) - WER(b) on the same utterances with a paired-bootstrap 95 % interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(words), size=(rounds, len(words)))
    total = np.maximum(words[idx].sum(1), 1)
    diffs = (errors_a[idx].sum(1) - errors_b[idx].sum(1)) / total
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    diff = float((errors_a.sum() - errors_b.sum()) / max(words.sum(), 1))
    return {"difference": diff, "ci95": [float(lo), float(hi)]}
