"""The audio boundary of the engine: anything that comes in becomes 16 kHz mono float32.

Contract (project brief): audio at any sample rate, dtype or channel count is
converted and transcribed like its 16 kHz mono float32 form; audio that cannot be
used (NaN/Inf samples, unreadable files, files without samples) is refused with an
`AudioInputError` that names the input and the problem. Nothing here clips, drops or
pads silently beyond what the docstrings state.

Three pieces, used by streams and by the offline reference alike:

- `to_mono_float32`: one array (a block or a whole signal) to mono float32 in [-1, 1].
- `StreamingResampler`: block-by-block resampling whose concatenated output equals
  `canonical_16k` of the whole signal (same length, same samples).
- `read_audio_blocks` / `read_audio`: files through libsndfile, block by block.

Arrays are `(frames,)` or `(frames, channels)`: soundfile's and sounddevice's
convention, not librosa's `(channels, frames)`.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from framegate.engine.errors import AudioInputError

TARGET_RATE = 16000
MIN_RATE = 1000
MAX_RATE = 384000
# soxr 'HQ' (20-bit precision, ~-120 dB stopband). Its streamed output is bit-identical
# to its one-shot output (as is 'VHQ'), it is soxr.resample's default, and at 44.1/48 kHz
# it holds back about half as much audio as 'VHQ' (~40 ms against ~80 ms at worst with
# 10 ms blocks). 'VHQ''s extra precision lies below float32 features' resolution.
RESAMPLE_QUALITY = "HQ"
# A 2-D array with more channels than frames and more than this many channels is
# almost certainly (channels, frames); it is refused rather than averaged into noise.
_LIKELY_TRANSPOSED_CHANNELS = 64


def to_mono_float32(samples: np.ndarray | Sequence, *, what: str = "samples") -> np.ndarray:
    """One signal or block as C-contiguous mono float32 in [-1, 1], shape (frames,).

    Input is `(frames,)` or `(frames, channels)`, any layout (strided views,
    Fortran order, read-only arrays all work); the result is always a new array.

    - Signed integers are PCM at their full scale: x / 2**(bits - 1) (int16 / 32768),
      so int8, int16, int32 and int64 land in [-1, 1). (int32/int64 values within
      half a float32 step of full scale round to 1.0.)
    - Unsigned integers are offset binary (uint8 128 is silence): (x - 2**(bits-1)) / 2**(bits-1).
    - Floats (float16/32/64) are taken as amplitudes with full scale 1.0.
    - Every sample beyond [-1, 1] is clipped to it, per channel, before channels are
      averaged: a float signal louder than full scale, however loud, comes out as
      the saturated signal an integer converter would have produced.
    - Channels are averaged (stereo, 5.1, ...).
    - 0 frames give an empty array (streams accept empty blocks); whether an empty
      file or utterance is acceptable is for the caller to decide.

    Raises `AudioInputError` naming `what` for: NaN or infinite samples (how many and
    the first frame), a scalar or more than 2 dimensions, zero channels, a shape that
    looks transposed (more than 64 channels and more channels than frames), bool,
    complex, string or object dtypes, and a Python sequence of plain ints (its sample
    width is unknown: pass a numpy array with a dtype).
    """
    if not isinstance(samples, np.ndarray):
        try:
            array = np.asarray(samples)
        except (ValueError, TypeError) as e:
            raise AudioInputError(f"{what}: cannot be read as an array of samples ({e})") from None
        if array.dtype == np.dtype(int):
            raise AudioInputError(
                f"{what}: a sequence of Python ints has no sample width; pass a numpy array "
                "with an integer dtype (e.g. np.int16) or float amplitudes in [-1, 1]"
            )
        samples = array
    _check_layout(samples, what)
    if samples.ndim == 2 and samples.shape[1] > max(_LIKELY_TRANSPOSED_CHANNELS, samples.shape[0]):
        frames, channels = samples.shape
        raise AudioInputError(
            f"{what}: shape {samples.shape} reads as {frames} frame(s) of {channels} channels; "
            "arrays are (frames, channels): pass samples.T if yours is (channels, frames)"
        )
    return _downmix(samples, what, first_frame=0)


def _check_layout(samples: np.ndarray, what: str) -> None:
    kind = samples.dtype.kind
    if kind not in "iuf":
        raise AudioInputError(
            f"{what}: dtype {samples.dtype} is not audio "
            "(expected integer PCM or float samples)"
        )
    if samples.ndim not in (1, 2):
        raise AudioInputError(
            f"{what}: expected a 1-D (frames,) or 2-D (frames, channels) array, "
            f"got {samples.ndim}-D shape {samples.shape}"
        )
    if samples.ndim == 2 and samples.shape[1] == 0:
        raise AudioInputError(f"{what}: shape {samples.shape} has zero channels")


def _downmix(samples: np.ndarray, what: str, first_frame: int) -> np.ndarray:
    """`to_mono_float32` after its shape checks; `first_frame` places a block in its file."""
    kind = samples.dtype.kind
    if kind == "f":
        _check_finite(samples, what, first_frame)
        # Clip in the input's own precision: float64 beyond float32's range must not become inf.
        scaled = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
    else:
        half_scale = 2.0 ** (8 * samples.dtype.itemsize - 1)
        if kind == "u":
            scaled = ((samples.astype(np.float64) - half_scale) / half_scale).astype(np.float32)
        else:
            scaled = samples.astype(np.float32) * np.float32(1.0 / half_scale)
    if scaled.ndim == 2:
        scaled = scaled[:, 0].copy() if scaled.shape[1] == 1 else scaled.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def _check_finite(samples: np.ndarray, what: str, first_frame: int) -> None:
    finite = np.isfinite(samples)
    if finite.all():
        return
    n_nan = int(np.isnan(samples).sum())
    n_inf = int(finite.size - finite.sum()) - n_nan
    bad_frames = ~finite if finite.ndim == 1 else ~finite.all(axis=1)
    first_bad = first_frame + int(np.argmax(bad_frames))
    raise AudioInputError(
        f"{what}: contains {n_nan} NaN and {n_inf} infinite sample(s), "
        f"the first at frame {first_bad}"
    )


def _check_rate(rate: object, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise AudioInputError(f"{name} {rate!r} is not an integer number of samples per second")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioInputError(
            f"{name} {rate} Hz is outside the supported {MIN_RATE}..{MAX_RATE} Hz"
        )
    return int(rate)


class StreamingResampler:
    """Mono float32 resampling block by block, for one utterance.

    Feeding a signal through `process` in any block sizes (including empty blocks)
    and then calling `flush` once yields, concatenated, exactly `soxr.resample` of the
    whole signal at `RESAMPLE_QUALITY` (what `canonical_16k` computes): the same
    round(n * out_rate / in_rate) samples, bit for bit (the tests allow 1e-4).
    Output lags input by the filter's delay plus soxr's internal buffering
    (~40 ms at 44.1/48 kHz, up to ~115 ms at 8 kHz with 10 ms blocks); `flush`
    returns the held-back tail.

    State (soxr's filter history) belongs to one utterance; `reset` drops it.
    When in_rate == out_rate no filter exists and blocks pass through as copies.
    """

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE) -> None:
        self.in_rate = _check_rate(in_rate, "input sample rate")
        self.out_rate = _check_rate(out_rate, "output sample rate")
        self._soxr = (
            None
            if self.in_rate == self.out_rate
            else soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )
        )
        self._flushed = False

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resample one mono block (1-D float, as `to_mono_float32` returns it).

        The output may be shorter or longer than the rate ratio suggests (soxr buffers);
        only the total after `flush` is fixed. Samples are not NaN-checked again: the
        caller's `to_mono_float32` is the validation point."""
        if self._flushed:
            raise RuntimeError("StreamingResampler.process after flush(); call reset() first")
        block = np.asarray(block)
        if block.ndim != 1 or block.dtype.kind != "f":
            raise AudioInputError(
                f"resampler input: expected a 1-D float block, got {block.ndim}-D {block.dtype}; "
                "convert with to_mono_float32 first"
            )
        if self._soxr is None:
            return np.array(block, dtype=np.float32)
        return self._soxr.resample_chunk(np.ascontiguousarray(block, dtype=np.float32))

    def flush(self) -> np.ndarray:
        """The tail held back by the filter; call once at the end of the input."""
        if self._flushed:
            raise RuntimeError("StreamingResampler.flush called twice; call reset() first")
        self._flushed = True
        if self._soxr is None:
            return np.zeros(0, dtype=np.float32)
        return self._soxr.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def reset(self) -> None:
        """Forget all input: the next `process` starts a new signal."""
        if self._soxr is not None:
            self._soxr.clear()
        self._flushed = False


def canonical_16k(samples: np.ndarray | Sequence, sample_rate: int) -> np.ndarray:
    """The whole signal as 16 kHz mono float32: the offline reference for streamed input.

    `to_mono_float32` then one-shot `soxr.resample` at `RESAMPLE_QUALITY`; empty input
    gives an empty result (the caller decides whether an empty utterance is an error).
    """
    rate = _check_rate(sample_rate, "sample rate")
    mono = to_mono_float32(samples)
    if rate == TARGET_RATE:
        return mono
    return np.ascontiguousarray(
        soxr.resample(mono, rate, TARGET_RATE, quality=RESAMPLE_QUALITY), dtype=np.float32
    )


def read_audio_blocks(
    path: str | Path, block_seconds: float = 1.0
) -> tuple[int, Iterator[np.ndarray]]:
    """Open an audio file (anything libsndfile reads: wav, flac, ogg, mp3, ...) and
    return its native sample rate and an iterator of mono float32 blocks of
    `block_seconds` (the last one shorter), read one block at a time.

    Memory stays bounded by one block whatever the file's length. The iterator owns
    the open file and closes it when exhausted, closed or garbage-collected.

    Raises `AudioInputError` at call time for a missing file, a directory, an
    unreadable file, bytes that are not audio, and a file without samples. Problems
    inside the file (NaN/Inf samples in a float file, a decoder error in a truncated
    file) raise `AudioInputError` naming the file when the iterator reaches them.
    """
    if isinstance(block_seconds, bool) or not (
        isinstance(block_seconds, numbers.Real) and math.isfinite(block_seconds) and block_seconds > 0
    ):
        raise AudioInputError(f"block_seconds {block_seconds!r} must be a positive number of seconds")
    what = f"audio file '{path}'"
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise AudioInputError(f"{what}: no such file") from None
    except IsADirectoryError:
        raise AudioInputError(f"{what}: is a directory, not an audio file") from None
    except OSError as e:
        raise AudioInputError(f"{what}: cannot be opened ({e.strerror or e})") from None
    try:
        sound = _open_sound(handle, what)
    except BaseException:
        handle.close()
        raise
    rate = sound.samplerate
    block_frames = max(1, round(block_seconds * rate))
    # Doubles stay doubles until clipped, so huge finite values clip instead of overflowing.
    dtype = "float64" if sound.subtype == "DOUBLE" else "float32"
    try:
        first = _read_block(sound, block_frames, dtype, what, 0)
        if first.shape[0] == 0:
            raise AudioInputError(f"{what}: contains no samples")
        first_mono = _downmix(first, what, first_frame=0)
    except BaseException:
        sound.close()
        handle.close()
        raise

    def blocks() -> Iterator[np.ndarray]:
        try:
            yield first_mono
            position = first.shape[0]
            while True:
                block = _read_block(sound, block_frames, dtype, what, position)
                if block.shape[0] == 0:
                    return
                yield _downmix(block, what, first_frame=position)
                position += block.shape[0]
        finally:
            sound.close()
            handle.close()

    return rate, blocks()


def _open_sound(handle, what: str) -> sf.SoundFile:
    if os.fstat(handle.fileno()).st_size == 0:
        raise AudioInputError(f"{what}: is empty (0 bytes), it contains no samples")
    try:
        return sf.SoundFile(handle)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
        detail = getattr(e, "error_string", None) or str(e)
        raise AudioInputError(f"{what}: is not a readable audio file ({detail})") from None


def _read_block(sound: sf.SoundFile, frames: int, dtype: str, what: str, position: int) -> np.ndarray:
    try:
        return sound.read(frames, dtype=dtype, always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        detail = getattr(e, "error_string", None) or str(e)
        raise AudioInputError(f"{what}: cannot be decoded past frame {position} ({detail})") from None


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as (mono float32 samples, native sample rate); for small files,
    tests and benchmarks. Same errors as `read_audio_blocks`, all raised here."""
    rate, blocks = read_audio_blocks(path)
    return np.concatenate(list(blocks)), rate
