"""80-bin log-mel filterbank features, the one definition used by training and the engine.

Training calls `compute_fbank` on whole utterances; the engine feeds `StreamingFbank`
block by block. Both wrap kaldi-native-fbank with `fbank_options()`, so they agree
frame for frame (a test checks it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import kaldi_native_fbank as knf
import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class FbankConfig:
    """Feature settings recorded in every bundle; sherpa-onnx uses the same values."""

    num_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 20.0
    high_freq: float = -400.0
    dither: float = 0.0
    snip_edges: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first field kaldi-native-fbank cannot run with.

        The native extractor divides by the frame shift and aborts the whole process on some
        bad values (a zero shift is a floating-point exception), so a bundle's feature config
        is checked here, at load, before it reaches it."""
        nyquist = SAMPLE_RATE / 2
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins < 3:
            raise ValueError(f"FbankConfig.num_bins must be an int >= 3, got {self.num_bins!r}")
        for name in ("frame_length_ms", "frame_shift_ms", "low_freq", "high_freq", "dither"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"FbankConfig.{name} must be a finite number, got {value!r}")
        shift = round(SAMPLE_RATE * self.frame_shift_ms / 1000)
        length = round(SAMPLE_RATE * self.frame_length_ms / 1000)
        if shift < 1:
            raise ValueError(f"FbankConfig.frame_shift_ms {self.frame_shift_ms} is under one sample at {SAMPLE_RATE} Hz")
        if not shift <= length <= SAMPLE_RATE:
            raise ValueError(f"FbankConfig.frame_length_ms {self.frame_length_ms} must span from the frame shift "
                             f"({self.frame_shift_ms} ms) to 1000 ms")
        low, high = self.band_hz()
        if not 0 <= low < high <= nyquist:
            raise ValueError(f"FbankConfig.low_freq {self.low_freq} and high_freq {self.high_freq} must give "
                             f"0 <= low < high <= {nyquist:g} Hz")
        if self.dither < 0:
            raise ValueError(f"FbankConfig.dither must be >= 0, got {self.dither}")
        if not isinstance(self.snip_edges, bool):
            raise ValueError(f"FbankConfig.snip_edges must be true or false, got {self.snip_edges!r}")

    def band_hz(self) -> tuple[float, float]:
        """The mel filterbank's (low, high) edges in Hz: kaldi reads a high_freq <= 0 as an
        offset from the Nyquist frequency."""
        high = self.high_freq if self.high_freq > 0 else SAMPLE_RATE / 2 + self.high_freq
        return self.low_freq, high

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fbank_options(config: FbankConfig = FbankConfig()) -> knf.FbankOptions:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = config.frame_length_ms
    opts.frame_opts.frame_shift_ms = config.frame_shift_ms
    opts.frame_opts.dither = config.dither
    opts.frame_opts.snip_edges = config.snip_edges
    opts.mel_opts.num_bins = config.num_bins
    opts.mel_opts.low_freq = config.low_freq
    opts.mel_opts.high_freq = config.high_freq
    return opts


class StreamingFbank:
    """Incremental fbank over 16 kHz float samples in [-1, 1].

    Frames are handed out once (`take`), and released from the extractor so memory
    stays bounded however long the stream runs.
    """

    def __init__(self, config: FbankConfig = FbankConfig()) -> None:
        self.config = config
        self._fbank = knf.OnlineFbank(fbank_options(config))
        self._taken = 0

    def accept(self, samples_16k: np.ndarray) -> None:
        # The binding takes a sequence of floats and reads it item by item. A numpy array hands
        # out numpy scalars (a third of the fbank's time goes into making them); a memoryview
        # of the same buffer hands out plain floats, without the 8x memory of a list.
        # float32 -> Python float -> float32 is exact, so the features are the same bits.
        self._fbank.accept_waveform(SAMPLE_RATE, memoryview(np.ascontiguousarray(samples_16k, dtype=np.float32)))

    def input_finished(self) -> None:
        self._fbank.input_finished()

    @property
    def frames_taken(self) -> int:
        return self._taken

    def take(self) -> np.ndarray:
        """All frames ready since the last call, shape (n, num_bins) float32."""
        ready = self._fbank.num_frames_ready
        n = ready - self._taken
        out = np.empty((n, self.config.num_bins), dtype=np.float32)
        if not n:
            return out
        for i in range(n):
            out[i] = self._fbank.get_frame(self._taken + i)
        self._fbank.pop(n)
        self._taken = ready
        return out


def compute_fbank(samples_16k: np.ndarray, config: FbankConfig = FbankConfig()) -> np.ndarray:
    """Features of a whole utterance, shape (frames, num_bins) float32."""
    fb = StreamingFbank(config)
    fb.accept(samples_16k)
    fb.input_finished()
    return fb.take()
