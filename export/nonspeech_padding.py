"""Surround training utterances with the corpus's own silence and noise (feature level).

The corpus trims every utterance to ~150 ms margins, and its silence/noise-only segments are
~3 % of it, so a model sees speech in nearly every frame it trains on. An always-listening
device mostly hears no speech, and an arbitrator can only learn to switch parts off there if
training shows it such frames often: padding each utterance with random crops of those
segments (before and after the speech) makes them a sizeable share of every batch. Features
are concatenated at 10 ms frames, the same as featurizing the concatenated audio except for the
two boundary frames.
"""
from __future__ import annotations

import numpy as np
import torch

from framegate.export.compute_cost import FBANK_FRAMES_PER_SECOND
from framegate.export.feature_cache import FeatureCache
from framegate.export.models.lstm_transducer import LOOKAHEAD_FRAMES, SUBSAMPLING


class NonSpeechPadding:
    """Random crops of a split's empty-transcript segments, put before and after utterances."""

    def __init__(self, cache: FeatureCache, max_seconds: float, probability: float) -> None:
        if max_seconds <= 0 or not 0.0 < probability <= 1.0:
            raise ValueError(f"non-speech padding needs max_seconds > 0 and probability in (0, 1], "
                             f"got {max_seconds}, {probability}")
        self.bank = [cache.features(i) for i, u in enumerate(cache.utterances) if not u.text]
        if not self.bank:
            raise ValueError("non-speech padding: the training split has no silence or noise segments")
        self.max_frames = round(max_seconds * FBANK_FRAMES_PER_SECOND)
        self.probability = probability
        # Frames an utterance gains on average: batches budget for them, so a padded step costs
        # what an unpadded one does (it holds less speech instead).
        crop = np.arange(1, self.max_frames + 1)
        self.expected_frames = probability * 2 * float(np.mean([np.minimum(crop, len(s)).mean() for s in self.bank]))

    def _crop(self, rng: np.random.Generator) -> np.ndarray:
        segment = self.bank[int(rng.integers(len(self.bank)))]
        frames = min(len(segment), int(rng.integers(1, self.max_frames + 1)))
        start = int(rng.integers(len(segment) - frames + 1))
        return segment[start:start + frames]

    def __call__(self, feats: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """`feats` (T, bins) with, with the configured probability, a crop before and one after;
        and the frames put before it (where the utterance starts in the result)."""
        if rng.random() >= self.probability:
            return feats, 0
        before = self._crop(rng)
        return np.concatenate([before, feats, self._crop(rng)]), len(before)


def encoder_frame_mask(fbank_mask: torch.Tensor, encoder_frames: int) -> torch.Tensor:
    """(N, T) per-fbank-frame flags -> (N, encoder_frames): each encoder frame takes the flag of
    the centre of its receptive field (fbank frames 4t .. 4t + 6 through the two 3-tap stride-2
    convs of the x4 subsampling)."""
    centre = torch.arange(encoder_frames, device=fbank_mask.device) * SUBSAMPLING + LOOKAHEAD_FRAMES
    return fbank_mask[:, centre.clamp(max=fbank_mask.shape[1] - 1)]
