"""The audio boundary: any dtype, layout, rate or file becomes 16 kHz mono float32, or a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from framegate.engine.audio import (
    RESAMPLE_QUALITY,
    StreamingResampler,
    canonical_16k,
    read_audio,
    read_audio_blocks,
    to_mono_float32,
)
from framegate.engine.errors import AudioInputError

RATES = [8000, 22050, 44100, 48000, 96000]


# ---------------------------------------------------------------- to_mono_float32: dtypes

@pytest.mark.parametrize(
    "samples, expected",
    [
        (np.array([-128, 0, 64, 127], np.int8), [-1.0, 0.0, 0.5, 127 / 128]),
        (np.array([0, 128, 192, 255], np.uint8), [-1.0, 0.0, 0.5, 127 / 128]),
        (np.array([-32768, 0, 16384, 32767], np.int16), [-1.0, 0.0, 0.5, 32767 / 32768]),
        (np.array([-2**31, 0, 2**30, -2**29], np.int32), [-1.0, 0.0, 0.5, -0.25]),
        (np.array([-2**63, 0, 2**62], np.int64), [-1.0, 0.0, 0.5]),
        (np.array([0, 2**15, 3 * 2**14], np.uint16), [-1.0, 0.0, 0.5]),
        (np.array([-0.75, 0.0, 0.123456789, 1.0], np.float64), [-0.75, 0.0, 0.123456789, 1.0]),
        (np.array([-0.5, 0.25, 0.099975586], np.float16), [-0.5, 0.25, np.float16(0.099975586)]),
        (np.array([0.3, -0.7], np.float32), [0.3, -0.7]),
    ],
    ids=["int8", "uint8", "int16", "int32", "int64", "uint16", "float64", "float16", "float32"],
)
def test_dtype_is_scaled_to_float_full_scale(samples, expected):
    out = to_mono_float32(samples)
    assert out.dtype == np.float32 and out.ndim == 1 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.asarray(expected, dtype=np.float32))


def test_int16_array_matches_libsndfile_scaling(tmp_path):
    """An int16 array and the same samples read from a PCM_16 file convert identically."""
    pcm = np.random.default_rng(0).integers(-32768, 32768, size=(4000, 2), dtype=np.int16)
    path = tmp_path / "pcm16.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    from_file, _ = read_audio(path)
    np.testing.assert_array_equal(to_mono_float32(pcm), from_file)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32])
def test_integer_extremes_map_to_minus_one_and_just_below_one(dtype):
    info = np.iinfo(dtype)
    low, high = to_mono_float32(np.array([info.min, info.max], dtype))
    assert low == -1.0
    assert 1.0 - 2.0 ** -7 <= high <= 1.0  # 32-bit and wider round to 1.0 in float32


def test_float_list_is_accepted_as_amplitudes():
    np.testing.assert_array_equal(to_mono_float32([0.5, -0.25]), np.array([0.5, -0.25], np.float32))


def test_list_of_python_ints_is_refused_as_ambiguous():
    with pytest.raises(AudioInputError, match="no sample width"):
        to_mono_float32([0, 1000, -1000])


# ---------------------------------------------------------------- to_mono_float32: layout

def test_stereo_is_averaged():
    left = np.array([0.5, -0.5, 0.25], np.float32)
    right = np.array([0.1, 0.5, -0.75], np.float32)
    np.testing.assert_allclose(to_mono_float32(np.stack([left, right], axis=1)), (left + right) / 2, atol=1e-7)


def test_surround_5_1_is_averaged_over_six_channels():
    frames = np.random.default_rng(1).uniform(-1, 1, size=(1000, 6)).astype(np.float32)
    np.testing.assert_allclose(to_mono_float32(frames), frames.mean(axis=1), atol=1e-7)


def test_2d_arrays_are_frames_by_channels():
    """(3 frames, 2 channels): three outputs, each the mean across its row."""
    frames = np.array([[0.2, 0.4], [0.6, 0.8], [-0.2, -0.4]], np.float32)
    np.testing.assert_allclose(to_mono_float32(frames), [0.3, 0.7, -0.3], atol=1e-7)


def test_single_channel_2d_equals_1d():
    x = np.random.default_rng(2).uniform(-1, 1, 500).astype(np.float32)
    np.testing.assert_array_equal(to_mono_float32(x[:, None]), x)


def test_transposed_looking_array_is_refused():
    with pytest.raises(AudioInputError, match=r"\(frames, channels\).*samples\.T"):
        to_mono_float32(np.zeros((2, 48000), np.float32))


@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: a[::3],                      # strided 1-D
        lambda a: a.reshape(-1, 4)[:, 1:3],    # two of four channels
        lambda a: np.asfortranarray(a.reshape(-1, 2)),
        lambda a: a[::-1],                     # negative stride
    ],
    ids=["stride3", "channel-slice", "fortran", "reversed"],
)
def test_non_contiguous_views_convert_like_their_copies(make_view):
    base = np.random.default_rng(3).integers(-32768, 32768, 4096, dtype=np.int16)
    view = make_view(base)
    out = to_mono_float32(view)
    np.testing.assert_array_equal(out, to_mono_float32(np.ascontiguousarray(view)))
    assert out.flags.c_contiguous


def test_read_only_input_works_and_is_not_aliased():
    x = np.linspace(-0.5, 0.5, 100, dtype=np.float32)
    x.setflags(write=False)
    out = to_mono_float32(x)
    np.testing.assert_array_equal(out, x)
    assert out.flags.writeable and not np.shares_memory(out, x)


def test_empty_input_gives_empty_output():
    assert to_mono_float32(np.zeros(0, np.int16)).shape == (0,)
    assert to_mono_float32(np.zeros((0, 2), np.float32)).shape == (0,)


# ---------------------------------------------------------------- to_mono_float32: range and errors

def test_huge_float_amplitudes_are_clipped_per_channel_before_mixing():
    x = np.array([[1e300, 0.0], [-5.0, -5.0], [0.5, 0.25], [2.0, -2.0]], np.float64)
    np.testing.assert_array_equal(to_mono_float32(x), np.array([0.5, -1.0, 0.375, 0.0], np.float32))


def test_float16_extremes_are_clipped_not_overflowed():
    out = to_mono_float32(np.full((10, 6), 65504, np.float16))
    np.testing.assert_array_equal(out, np.ones(10, np.float32))


@pytest.mark.parametrize("bad, count", [(np.nan, "1 NaN and 0 infinite"), (np.inf, "0 NaN and 1 infinite"),
                                        (-np.inf, "0 NaN and 1 infinite")])
def test_non_finite_samples_are_refused_with_count_and_position(bad, count):
    x = np.zeros((100, 2), np.float32)
    x[37, 1] = bad
    with pytest.raises(AudioInputError, match=rf"mic block: contains {count} sample\(s\), the first at frame 37"):
        to_mono_float32(x, what="mic block")


@pytest.mark.parametrize(
    "samples, problem",
    [
        (np.zeros(4, np.complex64), "dtype complex64 is not audio"),
        (np.zeros(4, bool), "dtype bool is not audio"),
        (np.array(["a", "b"]), "is not audio"),
        (np.array([0.1, None], dtype=object), "dtype object is not audio"),
        (np.zeros((2, 3, 4), np.float32), "got 3-D shape"),
        (np.float32(0.5), "got 0-D shape"),
        (np.zeros((10, 0), np.float32), "zero channels"),
        ([[0.1, 0.2], [0.3]], "cannot be read as an array"),
    ],
    ids=["complex", "bool", "str", "object", "3-D", "scalar", "no-channels", "ragged"],
)
def test_unusable_arrays_are_refused_naming_the_problem(samples, problem):
    with pytest.raises(AudioInputError, match=rf"^chunk 7: .*{problem}"):
        to_mono_float32(samples, what="chunk 7")


# ---------------------------------------------------------------- StreamingResampler

def chirp(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f0, f1 = 50.0, 0.49 * rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.8 * np.sin(phase)).astype(np.float32)


def white_noise(rate: int, seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, int(seconds * rate) + 17).astype(np.float32)


def random_block_sizes(rng: np.random.Generator, total: int, rate: int) -> list[int]:
    """Block sizes from 0 and 1 sample up to 2 s, log-uniform so small blocks are common."""
    sizes, used = [0, 1], 1
    while used < total:
        n = 0 if rng.random() < 0.05 else int(np.exp(rng.uniform(0, np.log(2 * rate))))
        sizes.append(n)
        used += n
    return sizes


def stream(resampler: StreamingResampler, signal: np.ndarray, sizes: list[int]) -> np.ndarray:
    outs, start = [], 0
    for n in sizes:
        outs.append(resampler.process(signal[start:start + n]))
        start += n
    assert start >= len(signal)
    outs.append(resampler.flush())
    assert all(o.dtype == np.float32 and o.ndim == 1 for o in outs)
    return np.concatenate(outs)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["chirp", "noise"])
def test_streamed_resampling_equals_one_shot_for_random_blocks(rate, seed, kind):
    signal = chirp(rate, 2.5) if kind == "chirp" else white_noise(rate, 2.5, seed)
    sizes = random_block_sizes(np.random.default_rng(seed), len(signal), rate)
    streamed = stream(StreamingResampler(rate), signal, sizes)
    reference = soxr.resample(signal, rate, 16000, quality=RESAMPLE_QUALITY)
    assert len(streamed) == len(reference) == round(len(signal) * 16000 / rate)
    assert np.abs(streamed - reference).max() <= 1e-4
    np.testing.assert_array_equal(reference, canonical_16k(signal, rate))


@pytest.mark.parametrize("rate", [8000, 44100])
def test_one_sample_blocks_lose_and_repeat_nothing(rate):
    signal = white_noise(rate, 0.05, seed=4)
    streamed = stream(StreamingResampler(rate), signal, [1] * len(signal))
    reference = canonical_16k(signal, rate)
    assert len(streamed) == len(reference)
    assert np.abs(streamed - reference).max() <= 1e-4


def test_reset_starts_a_fresh_signal():
    resampler = StreamingResampler(48000)
    resampler.process(white_noise(48000, 0.3, seed=5))
    resampler.reset()
    signal = chirp(48000, 0.7)
    streamed = stream(resampler, signal, [4800] * 7)
    assert np.abs(streamed - canonical_16k(signal, 48000)).max() <= 1e-4
    resampler.reset()
    assert np.abs(stream(resampler, signal, [len(signal)]) - streamed).max() == 0.0


def test_same_rate_passes_blocks_through_as_copies():
    resampler = StreamingResampler(16000)
    block = np.linspace(-1, 1, 321, dtype=np.float32)
    out = resampler.process(block)
    np.testing.assert_array_equal(out, block)
    assert not np.shares_memory(out, block)
    assert resampler.flush().shape == (0,)


def test_process_after_flush_requires_reset():
    resampler = StreamingResampler(22050)
    resampler.flush()
    with pytest.raises(RuntimeError, match="reset"):
        resampler.process(np.zeros(10, np.float32))
    resampler.reset()
    assert resampler.process(np.zeros(0, np.float32)).dtype == np.float32


@pytest.mark.parametrize("block", [np.zeros(10, np.int16), np.zeros((10, 2), np.float32)], ids=["int16", "stereo"])
def test_resampler_refuses_unconverted_blocks(block):
    with pytest.raises(AudioInputError, match="to_mono_float32"):
        StreamingResampler(44100).process(block)


@pytest.mark.parametrize(
    "rate, problem",
    [(0, "rate 0 Hz is outside"), (-16000, "rate -16000 Hz is outside"), (999, "rate 999 Hz is outside"),
     (384001, "rate 384001 Hz is outside"), (44100.0, "rate 44100.0 is not an integer"),
     (True, "rate True is not an integer"), ("16000", "rate '16000' is not an integer")],
)
def test_invalid_rates_are_refused_naming_the_rate(rate, problem):
    with pytest.raises(AudioInputError, match=f"^input sample {problem}"):
        StreamingResampler(rate)
    with pytest.raises(AudioInputError, match=f"^output sample {problem}"):
        StreamingResampler(16000, rate)


def test_canonical_16k_downmixes_and_resamples_stereo_int16():
    rng = np.random.default_rng(6)
    pcm = rng.integers(-20000, 20000, size=(48000, 2), dtype=np.int16)
    expected = soxr.resample(pcm.astype(np.float32).mean(axis=1) / 32768, 48000, 16000, quality=RESAMPLE_QUALITY)
    out = canonical_16k(pcm, 48000)
    assert out.dtype == np.float32 and len(out) == 16000
    assert np.abs(out - expected).max() <= 1e-6


# ---------------------------------------------------------------- files

FILE_CASES = [
    ("wav", "PCM_16", 48000, 2, np.int16),
    ("wav", "FLOAT", 8000, 1, np.float32),
    ("flac", "PCM_24", 44100, 2, np.float32),
    ("ogg", "VORBIS", 22050, 2, np.float32),
]


def write_case(tmp_path, ext, subtype, rate, channels, dtype, seconds=2.3):
    rng = np.random.default_rng(rate)
    data = rng.uniform(-0.5, 0.5, size=(int(seconds * rate), channels))
    if dtype == np.int16:
        data = (data * 32767).astype(np.int16)
    else:
        data = data.astype(np.float32)
    path = tmp_path / f"case_{rate}.{ext}"
    sf.write(path, data, rate, subtype=subtype)
    return path


@pytest.mark.parametrize("ext, subtype, rate, channels, dtype", FILE_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}ch" for c in FILE_CASES])
def test_file_read_block_by_block_equals_whole_file(tmp_path, ext, subtype, rate, channels, dtype):
    path = write_case(tmp_path, ext, subtype, rate, channels, dtype)
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    got_rate, blocks = read_audio_blocks(path, block_seconds=0.37)
    blocks = list(blocks)
    assert got_rate == rate
    block_frames = round(0.37 * rate)
    assert all(len(b) == block_frames for b in blocks[:-1]) and 0 < len(blocks[-1]) <= block_frames
    joined = np.concatenate(blocks)
    np.testing.assert_array_equal(joined, to_mono_float32(whole))
    samples, whole_rate = read_audio(path)
    assert whole_rate == rate
    np.testing.assert_array_equal(samples, joined)


def test_file_streamed_through_resampler_equals_canonical_16k(tmp_path):
    path = write_case(tmp_path, "wav", "PCM_16", 48000, 2, np.int16)
    rate, blocks = read_audio_blocks(path, block_seconds=0.25)
    resampler = StreamingResampler(rate)
    streamed = np.concatenate([resampler.process(b) for b in blocks] + [resampler.flush()])
    pcm, _ = sf.read(path, dtype="int16")
    reference = canonical_16k(pcm, 48000)
    assert len(streamed) == len(reference)
    assert np.abs(streamed - reference).max() <= 1e-4


def test_file_is_read_in_bounded_blocks(tmp_path, monkeypatch):
    path = write_case(tmp_path, "flac", "PCM_16", 16000, 1, np.float32, seconds=5.0)
    requested = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    rate, blocks = read_audio_blocks(path, block_seconds=0.5)
    assert len(requested) == 1  # only the first block is read before iteration
    assert sum(len(b) for b in blocks) == 5 * rate
    assert set(requested) == {8000}


def test_unicode_path_is_read(tmp_path):
    path = tmp_path / "sprach\u00adprobe_ü_日本.wav"
    sf.write(path, np.full(1600, 0.25, np.float32), 16000, subtype="FLOAT")
    samples, rate = read_audio(path)
    assert rate == 16000
    np.testing.assert_array_equal(samples, np.full(1600, 0.25, np.float32))
    assert read_audio_blocks(str(path))[0] == 16000


def test_missing_file_is_refused_at_open(tmp_path):
    with pytest.raises(AudioInputError, match=r"nope\.wav': no such file"):
        read_audio_blocks(tmp_path / "nope.wav")


def test_directory_is_refused(tmp_path):
    with pytest.raises(AudioInputError, match="is a directory"):
        read_audio(tmp_path)


def test_random_bytes_named_wav_are_not_a_readable_audio_file(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(8).bytes(4096))
    with pytest.raises(AudioInputError, match=r"noise\.wav': is not a readable audio file"):
        read_audio_blocks(path)


@pytest.mark.parametrize("ext", ["wav", "ogg", "aiff"])
def test_header_without_samples_contains_no_samples(tmp_path, ext):
    path = tmp_path / f"silent.{ext}"
    sf.write(path, np.zeros((0, 2), np.float32), 16000)
    with pytest.raises(AudioInputError, match=rf"silent\.{ext}': contains no samples"):
        read_audio_blocks(path)


def test_zero_byte_file_contains_no_samples(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty.wav': is empty \\(0 bytes\\), it contains no samples"):
        read_audio(path)


def test_nan_in_float_file_is_refused_when_its_block_is_read(tmp_path):
    path = tmp_path / "bad.wav"
    data = np.zeros((40000, 2), np.float32)
    data[23456, 0] = np.nan
    sf.write(path, data, 16000, subtype="FLOAT")
    _, blocks = read_audio_blocks(path, block_seconds=1.0)
    assert len(next(blocks)) == 16000
    with pytest.raises(AudioInputError, match=r"bad\.wav': contains 1 NaN .* first at frame 23456"):
        next(blocks)
    with pytest.raises(AudioInputError, match="bad.wav"):
        read_audio(path)


def test_truncated_flac_is_refused_naming_the_file(tmp_path):
    path = write_case(tmp_path, "flac", "PCM_16", 44100, 2, np.float32)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioInputError, match=r"case_44100\.flac': cannot be decoded past frame \d+"):
        read_audio(path)


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf")])
def test_invalid_block_seconds_are_refused(tmp_path, seconds):
    with pytest.raises(AudioInputError, match="block_seconds"):
        read_audio_blocks(tmp_path / "any.wav", block_seconds=seconds)
