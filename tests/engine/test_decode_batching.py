"""Fewer ONNX Runtime calls, same results: windows that are ready together share one encoder
call, and the search reuses decoder outputs of contexts it has seen."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from framegate.engine import decoding
from framegate.engine.bundle import Bundle
from framegate.engine.decoding import GreedySearch
from framegate.engine.encoder_runner import LstmEncoderRunner
from framegate.engine.endpoint import EndpointConfig
from framegate.engine.recognizer import Recognizer

SHORT_UTTERANCES = EndpointConfig(rule1_min_trailing_silence_s=1.0, rule2_min_trailing_silence_s=0.3,
                                  rule3_min_utterance_length_s=1.5)


def _windows(bundle: Bundle, count: int, seed: int) -> list[np.ndarray]:
    """`count` consecutive encoder windows cut from random fbank-like frames, as FeatureWindow cuts them."""
    enc = bundle.encoder
    frames = (np.random.default_rng(seed).normal(-11.0, 4.0, (count * enc.chunk_frames + enc.lookahead_frames,
                                                               bundle.features.num_bins))).astype(np.float32)
    return [frames[k * enc.chunk_frames:k * enc.chunk_frames + enc.window_frames] for k in range(count)]


@pytest.fixture(scope="module", params=["projected", "plain"])
def lstm_bundle(request, tiny_bundle: Path, plain_lstm_model_and_bundle) -> Bundle:
    """Both encoder spellings: the projected LSTM's Loop and ONNX's own LSTM op (the default model's)."""
    return Bundle.load(tiny_bundle if request.param == "projected" else plain_lstm_model_and_bundle[1])


@pytest.mark.parametrize("per_call", [2, 3, 16])
def test_encoding_windows_together_equals_encoding_them_one_by_one(lstm_bundle, per_call):
    runner = LstmEncoderRunner(lstm_bundle)
    windows = _windows(lstm_bundle, 2 * per_call + 1, seed=per_call)
    single, state = [], runner.initial_state()
    for window in windows:
        out, state = runner.encode(window, state)
        single.append(out)
    together, batched = [], runner.initial_state()
    for start in range(0, len(windows), per_call):
        outs, batched = runner.encode_windows(windows[start:start + per_call], batched)
        together.extend(outs)
    assert len(together) == len(single)
    for a, b in zip(together, single):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(batched.h, state.h)
    np.testing.assert_array_equal(batched.c, state.c)


def _feed(recognizer: Recognizer, samples_16k: np.ndarray, seed: int, stream_in_random_blocks
          ) -> tuple[object, int, int]:
    """Feed random blocks (up to 1.2 s, so several windows are often ready at once), decoding after
    each; returns the finished result, how many encoder calls took more than one window and how
    many windows were encoded in all."""
    batched_calls = encoded = 0
    encode_windows = recognizer.encode_windows

    def counting(windows, state):
        nonlocal batched_calls, encoded
        batched_calls += len(windows) > 1
        encoded += len(windows)
        return encode_windows(windows, state)

    recognizer.encode_windows = counting
    stream = stream_in_random_blocks(recognizer, samples_16k, seed, max_block=19199)
    del recognizer.encode_windows
    return stream.result, batched_calls, encoded


@pytest.mark.parametrize("endpoint", [None, SHORT_UTTERANCES], ids=["one-utterance", "endpoints"])
@pytest.mark.parametrize("seed", [0, 1])
def test_streams_decode_alike_with_and_without_window_batching(tiny_bundle, speechlike_16k, endpoint, seed,
                                                               stream_in_random_blocks):
    batching = Recognizer(tiny_bundle, endpoint=endpoint)
    one_by_one = Recognizer(tiny_bundle, endpoint=endpoint)
    one_by_one._encoder.windows_per_call = 1
    got, batched_calls, batched_windows = _feed(batching, speechlike_16k, seed, stream_in_random_blocks)
    want, unbatched_calls, unbatched_windows = _feed(one_by_one, speechlike_16k, seed, stream_in_random_blocks)
    assert batched_calls > 0 and unbatched_calls == 0  # the comparison is not vacuous
    assert got.tokens == want.tokens and len(want.tokens) > 20
    assert got.timestamps == want.timestamps
    assert [(s.tokens, s.start_s, s.end_s) for s in got.segments] == [(s.tokens, s.start_s, s.end_s)
                                                                     for s in want.segments]
    if endpoint is not None:
        assert len(want.segments) >= 3
        # an endpoint inside a batched call drops the call's later windows, which the next
        # utterance encodes again: the case where batching could go wrong did happen
        assert batched_windows > unbatched_windows
    else:
        assert batched_windows == unbatched_windows


def test_cached_decoder_outputs_are_what_the_decoder_computes(tiny_bundle, speechlike_16k, monkeypatch):
    monkeypatch.setattr(decoding, "DECODER_CACHE_CONTEXTS", 4)
    bundle = Bundle.load(tiny_bundle)
    search = GreedySearch(bundle)
    recognizer = Recognizer(tiny_bundle, endpoint=None)
    recognizer._search = search
    tokens = recognizer.transcribe(speechlike_16k, 16000).tokens
    info = search._decoder._cached.cache_info()
    assert len(tokens) > 20 and info.misses > 4  # more contexts than the cache holds went through it
    assert info.currsize == 4
    state = search.initial_state()
    for token in (2, 5, 2, 7, 5, 2):  # some contexts recur, some were evicted
        context = (*state.context[0, 1:].tolist(), token)
        cached = search._decoder(context)
        fresh = bundle.decoder_session.run(None, {"y": np.array([context], dtype=np.int64)})[0]
        np.testing.assert_array_equal(cached, fresh)
        assert not cached.flags.writeable  # shared by streams: nobody may change it in place
        state.context = np.array([context], dtype=np.int64)
