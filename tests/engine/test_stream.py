"""Streaming equals offline: any block sizes, any input rate, bounded state."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from framegate.engine import offline
from framegate.engine.audio import StreamingResampler, canonical_16k
from framegate.engine.errors import AudioInputError
from framegate.engine.recognizer import Recognizer
from framegate.engine.stream import Stream


@pytest.fixture(scope="module", params=["tiny_bundle", "tiny_bundle_int8"])
def recognizer(request: pytest.FixtureRequest) -> Recognizer:
    """No endpointing: the whole signal is one utterance, as in the offline reference. The int8
    bundle too: its fixed input ranges make every call round alike (export/quantize.py)."""
    return Recognizer(request.getfixturevalue(request.param), endpoint=None)


def random_blocks(signal: np.ndarray, rng: np.random.Generator, max_block: int) -> list[np.ndarray]:
    """Blocks of log-uniform size in [1, max_block], so tiny and large blocks both occur."""
    blocks, pos = [], 0
    while pos < len(signal):
        size = int(np.exp(rng.uniform(0, np.log(max_block))))
        blocks.append(signal[pos:pos + size])
        pos += size
    return blocks


def stream_with_encoder_capture(recognizer: Recognizer, blocks: list[np.ndarray], sample_rate: int,
                                capture_encoder_frames) -> tuple[Stream, np.ndarray]:
    """Feed blocks (decoding after each) and return the stream and every encoder frame it produced."""
    with capture_encoder_frames(recognizer) as captured:
        stream = recognizer.create_stream()
        for block in blocks:
            stream.accept_waveform(sample_rate, block)
            recognizer.decode(stream)
        stream.input_finished()
        recognizer.decode(stream)
    return stream, np.concatenate(captured)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_equals_offline_for_random_blocks(recognizer, speechlike_16k, seed, capture_encoder_frames):
    blocks = random_blocks(speechlike_16k, np.random.default_rng(seed), max_block=32000)
    stream, encoder_out = stream_with_encoder_capture(recognizer, blocks, 16000, capture_encoder_frames)
    np.testing.assert_allclose(encoder_out, offline.encoder_output(recognizer.bundle, speechlike_16k), atol=1e-5)
    reference = offline.recognize(recognizer.bundle, speechlike_16k)
    result = stream.result
    assert result.is_final
    assert result.tokens == [recognizer.bundle.tokens[t] for t in reference.tokens]
    assert len(result.tokens) > 20  # the random model emits: the comparison is not vacuous
    assert result.timestamps == [round(f * 0.04, 6) for f in reference.token_frames]


def test_one_sample_blocks_equal_offline(recognizer, speechlike_16k, capture_encoder_frames):
    head = speechlike_16k[:4000]
    stream, encoder_out = stream_with_encoder_capture(recognizer, list(head.reshape(-1, 1)), 16000,
                                                      capture_encoder_frames)
    np.testing.assert_allclose(encoder_out, offline.encoder_output(recognizer.bundle, head), atol=1e-5)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_streaming_equals_offline_at_other_input_rates(recognizer, speechlike_16k, rate, capture_encoder_frames):
    signal = soxr.resample(speechlike_16k, 16000, rate).astype(np.float32)
    blocks = random_blocks(signal, np.random.default_rng(rate), max_block=2 * rate)
    resampler = StreamingResampler(rate)
    streamed_16k = np.concatenate([resampler.process(b) for b in blocks] + [resampler.flush()])
    one_shot_16k = canonical_16k(signal, rate)
    assert streamed_16k.shape == one_shot_16k.shape
    np.testing.assert_allclose(streamed_16k, one_shot_16k, atol=1e-4)

    stream, encoder_out = stream_with_encoder_capture(recognizer, blocks, rate, capture_encoder_frames)
    np.testing.assert_allclose(encoder_out, offline.encoder_output(recognizer.bundle, one_shot_16k), atol=1e-4)
    reference = offline.recognize(recognizer.bundle, one_shot_16k)
    assert stream.result.tokens == [recognizer.bundle.tokens[t] for t in reference.tokens]


def test_any_dtype_and_channels_transcribe_like_mono_float(recognizer, speechlike_16k):
    pcm16 = np.round(speechlike_16k * 32767).astype(np.int16)
    stereo = np.stack([pcm16, pcm16], axis=1)
    assert recognizer.transcribe(stereo, 16000).text == recognizer.transcribe(pcm16.astype(np.float32) / 32768, 16000).text


def test_sample_rate_change_mid_stream_is_refused(recognizer):
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, np.zeros(1600, dtype=np.float32))
    with pytest.raises(AudioInputError, match="from 16000 Hz to 8000 Hz"):
        stream.accept_waveform(8000, np.zeros(800, dtype=np.float32))


def test_nan_samples_are_refused(recognizer):
    stream = recognizer.create_stream()
    with pytest.raises(AudioInputError, match="NaN"):
        stream.accept_waveform(16000, np.array([0.0, np.nan], dtype=np.float32))


def test_state_stays_bounded_over_a_long_stream_without_endpoints(recognizer):
    rng = np.random.default_rng(3)
    stream = recognizer.create_stream()
    block = 8000
    held = []
    for _ in range(120):  # 60 s of noise in 0.5 s blocks
        stream.accept_waveform(16000, (0.3 * rng.standard_normal(block)).astype(np.float32))
        recognizer.decode(stream)
        utt = stream.utterance
        held.append((len(utt.samples), len(utt.windows), utt.window.capacity_frames))
    assert stream.utterance.search.frames >= 1400  # really one long utterance
    samples, windows, capacity = map(np.array, zip(*held))
    enc = recognizer.bundle.encoder
    assert samples.max() <= block + (enc.window_frames + 2) * 160
    assert samples[60:].max() <= samples[:60].max()
    assert windows.max() == 0 and capacity.max() == capacity.min()
