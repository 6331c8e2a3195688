"""The engine's fbank is kaldi-native-fbank's, bit for bit, however the samples arrive."""
from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

from framegate.engine.features import SAMPLE_RATE, StreamingFbank, compute_fbank, fbank_options


def _knf_reference(samples_16k: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank fed the whole float32 array in one call, as its own docs show."""
    fbank = knf.OnlineFbank(fbank_options())
    fbank.accept_waveform(SAMPLE_RATE, samples_16k)
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def test_streamed_fbank_equals_kaldi_native_fbank_bit_for_bit(speechlike_16k):
    rng = np.random.default_rng(11)
    stream, taken, pos = StreamingFbank(), [], 0
    while pos < len(speechlike_16k):
        size = int(rng.integers(1, 5000))
        block = speechlike_16k[pos:pos + size]
        # any layout and float dtype: a strided float64 view must give the same frames
        stream.accept(np.repeat(block.astype(np.float64), 2)[::2] if size % 2 else block)
        taken.append(stream.take())
        pos += size
    stream.input_finished()
    taken.append(stream.take())
    reference = _knf_reference(speechlike_16k)
    np.testing.assert_array_equal(np.concatenate(taken), reference)
    np.testing.assert_array_equal(compute_fbank(speechlike_16k), reference)
