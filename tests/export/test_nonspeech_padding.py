"""Training utterances padded with the corpus's own silence and noise, and the gate telemetry that shows why."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from framegate.export.feature_cache import FeatureCache
from framegate.export.nonspeech_padding import NonSpeechPadding


def _train_cache(tiny_corpus: Path, tmp_path: Path) -> FeatureCache:
    return FeatureCache.build(tiny_corpus / "train.jsonl", tmp_path / "features", workers=1)


def _is_slice_of_a_bank_segment(piece: np.ndarray, bank: list[np.ndarray]) -> bool:
    for segment in bank:
        for start in range(len(segment) - len(piece) + 1):
            if np.array_equal(segment[start:start + len(piece)], piece):
                return True
    return False


def test_padding_surrounds_the_utterance_with_crops_of_the_empty_segments(tiny_corpus: Path, tmp_path: Path) -> None:
    cache = _train_cache(tiny_corpus, tmp_path)
    empty = [i for i, u in enumerate(cache.utterances) if not u.text]
    speech = next(i for i, u in enumerate(cache.utterances) if u.text)
    assert empty, "the tiny corpus has silence/noise segments"
    padding = NonSpeechPadding(cache, max_seconds=0.3, probability=1.0)
    utterance = cache.features(speech)
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(20):
        padded, start = padding(utterance, rng)
        assert np.array_equal(padded[start:start + len(utterance)], utterance)  # where it says the speech is
        before, after = padded[:start], padded[start + len(utterance):]
        assert 1 <= len(before) <= 30 and 1 <= len(after) <= 30
        assert _is_slice_of_a_bank_segment(before, padding.bank) and _is_slice_of_a_bank_segment(after, padding.bank)
        lengths.add(len(padded))
    assert len(lengths) > 1  # random lengths, not one fixed pad


def test_padding_probability_is_the_share_of_padded_utterances(tiny_corpus: Path, tmp_path: Path) -> None:
    cache = _train_cache(tiny_corpus, tmp_path)
    padding = NonSpeechPadding(cache, max_seconds=0.2, probability=0.25)
    utterance = cache.features(0)
    rng = np.random.default_rng(1)
    padded = sum(len(padding(utterance, rng)[0]) > len(utterance) for _ in range(2000))
    assert 0.21 < padded / 2000 < 0.29
    gained = np.mean([len(padding(utterance, rng)[0]) - len(utterance) for _ in range(4000)])
    assert gained == pytest.approx(padding.expected_frames, rel=0.1)  # what batches budget for
    for bad in (dict(max_seconds=0.0, probability=0.5), dict(max_seconds=1.0, probability=0.0)):
        with pytest.raises(ValueError, match="non-speech padding"):
            NonSpeechPadding(cache, **bad)
