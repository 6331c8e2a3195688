"""The offline reference: the same graphs run once over a whole utterance.

"Streaming equals offline" (DESIGN.md) compares the engine against this: fbank of the
whole 16 kHz signal, padded at the tail exactly as the stream's FeatureWindow pads it,
one encoder call over all frames from zero state, then the same greedy search. Used by
tests and benchmarks; it never runs on the streaming path.
"""
from __future__ import annotations

import numpy as np

from framegate.engine.bundle import Bundle
from framegate.engine.decoding import GreedySearch, SearchState
from framegate.engine.encoder_runner import encoder_runner
from framegate.engine.features import compute_fbank


def padded_features(bundle: Bundle, samples_16k: np.ndarray) -> np.ndarray:
    """Fbank frames padded with pad_value to the smallest k*chunk + lookahead >= frames (k >= 1)."""
    frames = compute_fbank(samples_16k, bundle.features)
    enc = bundle.encoder
    if not len(frames):
        return frames
    chunks = max(1, -(-(len(frames) - enc.lookahead_frames) // enc.chunk_frames))
    length = chunks * enc.chunk_frames + enc.lookahead_frames
    pad = np.full((length - len(frames), frames.shape[1]), enc.pad_value, dtype=np.float32)
    return np.concatenate([frames, pad])


def encoder_output(bundle: Bundle, samples_16k: np.ndarray) -> np.ndarray:
    """(frames, joiner_dim) from one encoder call over the whole padded utterance."""
    features = padded_features(bundle, samples_16k)
    if not len(features):
        return np.zeros((0, bundle.encoder.joiner_dim), dtype=np.float32)
    return encoder_runner(bundle).encode_utterance(features)


def recognize(bundle: Bundle, samples_16k: np.ndarray) -> SearchState:
    """Greedy search over `encoder_output`: token ids and their encoder frames."""
    search = GreedySearch(bundle)
    state = search.initial_state()
    search.search(encoder_output(bundle, samples_16k), state)
    return state
