"""The input catalogue: every kind of bad or odd input, with its written outcome, asserted.

This file is the contract for what framegate does with input (issue 7). Each row says in its
`outcome` what must happen, and the test asserts exactly that, through the public API
(`Recognizer`, `Stream`) or the CLI (`framegate transcribe`). Two kinds of outcome:

- VALID rows transcribe exactly like their canonical form, 16 kHz mono float32 built here
  independently of the engine's own conversion (same tokens, a final result).
- INVALID rows raise a `FramegateError` subclass (`AudioInputError`, `BundleError`) whose
  message names the problem; through the CLI that is one `framegate: error:` line and exit 2.
  Nothing crashes, nothing prints a traceback.

Some rows repeat checks that test_audio.py, test_bundle.py or test_cli.py make on the lower
layers; here they go through the public entry points, because this table is the written
contract. New kernels and bundle types add their rows here.
"""
from __future__ import annotations

import json
import shutil
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from framegate.engine.errors import AudioInputError, BundleError, FramegateError
from framegate.engine.recognizer import Recognizer
from test_bundle import edit_manifest, refresh_checksum  # tests/engine is on sys.path
from test_cli import assert_user_error, run_main

CLIP_S = 3.0


@pytest.fixture(scope="module")
def recognizer(tiny_bundle: Path) -> Recognizer:
    """Default endpointing, as a user gets it."""
    return Recognizer(tiny_bundle)


@pytest.fixture(scope="module")
def clip(speechlike_16k: np.ndarray) -> np.ndarray:
    """3 s of the speech-like signal at 16 kHz, peak 0.5 so integer and clipping rows stay exact."""
    x = speechlike_16k[: int(CLIP_S * 16000)].astype(np.float64)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


# -- VALID: transcribes like its canonical 16 kHz mono float32 form -------------------------------

@dataclass(frozen=True)
class Valid:
    """make(clip) -> (samples, rate) fed to Recognizer.transcribe; canonical(samples) -> 16 kHz float32."""

    id: str
    outcome: str
    make: Callable[[np.ndarray], tuple[object, int]]
    canonical: Callable[[object], np.ndarray]


def _resampled(rate: int) -> Valid:
    return Valid(
        f"rate_{rate}_hz",
        f"audio at {rate} Hz is resampled (soxr HQ) and transcribes like soxr.resample(x, {rate}, 16000)",
        lambda c: (soxr.resample(c, 16000, rate).astype(np.float32), rate),
        lambda x: soxr.resample(x, rate, 16000, quality="HQ").astype(np.float32),
    )


def _read_only(c: np.ndarray) -> np.ndarray:
    view = c.copy()
    view.flags.writeable = False
    return view


def _channel_mean(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1, 1).mean(axis=1, dtype=np.float64).astype(np.float32)


VALID = [
    Valid("one_sample", "a single sample is a valid (silent) signal: final result, no tokens, no error",
          lambda c: (np.array([0.3], np.float32), 16000), lambda x: np.asarray(x, np.float32)),
    Valid("huge_float32_amplitudes", "float32 far beyond full scale (x 1e4) is clipped to [-1, 1], never wraps or NaNs",
          lambda c: (c * np.float32(1e4), 16000), lambda x: np.clip(x, -1, 1)),
    Valid("float64_beyond_float32_range", "float64 amplitudes of 1e300 clip in float64 (no inf after the cast)",
          lambda c: (c.astype(np.float64) * 1e300, 16000), lambda x: np.clip(x, -1, 1).astype(np.float32)),
    Valid("int8", "int8 PCM is scaled by 1/128",
          lambda c: (np.round(c * 127).astype(np.int8), 16000), lambda x: (x / 128).astype(np.float32)),
    Valid("int16", "int16 PCM is scaled by 1/32768",
          lambda c: (np.round(c * 32767).astype(np.int16), 16000), lambda x: (x / 32768).astype(np.float32)),
    Valid("int32", "int32 PCM is scaled by 1/2**31",
          lambda c: ((c.astype(np.float64) * (2**31 - 1)).astype(np.int32), 16000),
          lambda x: (x / 2**31).astype(np.float32)),
    Valid("uint8", "unsigned 8-bit PCM is offset binary: (x - 128) / 128",
          lambda c: (np.round(c * 127 + 128).astype(np.uint8), 16000),
          lambda x: ((x.astype(np.float64) - 128) / 128).astype(np.float32)),
    Valid("float64", "float64 amplitudes become float32 amplitudes",
          lambda c: (c.astype(np.float64), 16000), lambda x: x.astype(np.float32)),
    Valid("float_list", "a Python list of floats is read as amplitudes",
          lambda c: (c.tolist(), 16000), lambda x: np.asarray(x, np.float32)),
    Valid("non_contiguous_view", "a strided view transcribes like its contiguous copy",
          lambda c: (np.repeat(c, 2)[::2], 16000), lambda x: np.ascontiguousarray(x)),
    Valid("read_only_array", "a read-only array is accepted and not written to",
          lambda c: (_read_only(c), 16000), lambda x: np.array(x)),
    Valid("frames_by_one_channel", "a (frames, 1) array is the same as (frames,)",
          lambda c: (c[:, None], 16000), lambda x: x[:, 0].copy()),
    Valid("stereo_fortran_order", "stereo (frames, 2), even Fortran-ordered, is the mean of its channels",
          lambda c: (np.asfortranarray(np.stack([c, 0.25 * c[::-1]], axis=1)), 16000), _channel_mean),
    Valid("surround_5_1", "5.1 (frames, 6) is the mean of its six channels",
          lambda c: (np.stack([c * k for k in (1.0, 0.5, 0.8, 0.1, 0.3, 0.6)], axis=1).astype(np.float32), 16000),
          _channel_mean),
    _resampled(8000), _resampled(22050), _resampled(44100), _resampled(48000), _resampled(96000),
]


@pytest.mark.parametrize("row", VALID, ids=[r.id for r in VALID])
def test_valid_input_transcribes_like_its_canonical_form(recognizer, clip, row: Valid):
    samples, rate = row.make(clip)
    canonical = row.canonical(samples)
    assert canonical.dtype == np.float32 and canonical.ndim == 1
    expected = recognizer.transcribe(canonical, 16000)
    got = recognizer.transcribe(samples, rate)
    assert got.is_final
    assert got.tokens == expected.tokens, row.outcome
    if row.id == "one_sample":
        assert got.tokens == []
    else:
        assert len(expected.tokens) > 10  # the random model emits: the comparison is not vacuous
    if row.id == "read_only_array":
        assert not samples.flags.writeable and np.array_equal(samples, clip)


def test_valid_stream_with_empty_and_one_sample_blocks_transcribes_like_one_call(recognizer, clip):
    """Outcome: a stream fed empty blocks and 1-sample blocks between normal ones equals one call."""
    stream = recognizer.create_stream()
    pos = 0
    for size in [0, 1, 1, 0, 4000, 0, 1, 7000] * 8:
        stream.accept_waveform(16000, clip[pos:pos + size])
        recognizer.decode(stream)
        pos += size
    stream.accept_waveform(16000, clip[pos:])
    stream.input_finished()
    recognizer.decode(stream)
    assert stream.result.tokens == recognizer.transcribe(clip, 16000).tokens


def test_valid_unicode_path_through_the_cli(capsys, recognizer, clip, tmp_path):
    """Outcome: a file whose directory and name are non-ASCII (accents, CJK, Cyrillic, emoji) is
    read and transcribed like the array it holds; the JSON echoes the path unescaped."""
    folder = tmp_path / "données 音声"
    folder.mkdir()
    path = folder / "запись 🎙.wav"
    sf.write(path, clip, 16000, subtype="FLOAT")
    code, out, err = run_main(capsys, "transcribe", str(path), "--model", str(recognizer.bundle.path), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["file"] == str(path) and "запись 🎙.wav" in out
    assert record["tokens"] == recognizer.transcribe(clip, 16000).tokens


def test_valid_ten_minute_file_is_streamed_with_memory_independent_of_its_length(recognizer, speechlike_16k,
                                                                                tmp_path):
    """Outcome: a 10-minute file read block by block (read_audio_blocks, 0.1 s blocks) through a
    stream whose closed segments the caller takes as they close: after a 2-minute warm-up, the
    Python-side allocations (numpy included, tracemalloc) never rise more than 0.5 MB above their
    level at the warm-up's end over the next 8 minutes, far below the 30 MB the decoded rest of the
    file would take; every second of the file is transcribed, each segment taken once."""
    from framegate.engine.audio import read_audio_blocks

    path = tmp_path / "ten_minutes.wav"
    n = 10 * 60 * 16000
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        for start in range(0, n, len(speechlike_16k)):
            f.write(speechlike_16k[: n - start])
    rate, blocks = read_audio_blocks(path, block_seconds=0.1)
    stream = recognizer.create_stream()
    segments, fed = [], 0
    try:
        for block in blocks:
            stream.accept_waveform(rate, block)
            recognizer.decode(stream)
            segments += stream.take_segments()
            fed += len(block)
            if fed == 2 * 60 * 16000:
                tracemalloc.start()
                warm, _ = tracemalloc.get_traced_memory()
        stream.input_finished()
        recognizer.decode(stream)
        segments += stream.take_segments()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fed == n and stream.result.is_final
    assert len(segments) >= 600 / 21  # rule 3 (20 s) cut it all along
    assert segments[-1].end_s == pytest.approx(600.0, abs=0.2)
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(segments, segments[1:]))
    assert peak - warm < 500_000, (warm, peak)


def test_valid_segments_taken_by_the_caller_leave_the_stream(recognizer, speechlike_16k):
    """Outcome: take_segments hands over each closed segment once; the result then holds only the rest."""
    stream = recognizer.create_stream()
    whole = np.tile(speechlike_16k, 4)  # 25 s: rule 3 (20 s) closes one segment
    stream.accept_waveform(16000, whole)
    recognizer.decode(stream)
    taken = stream.take_segments()
    assert len(taken) == 1 and stream.take_segments() == []
    assert stream.result.segments == []
    stream.input_finished()
    recognizer.decode(stream)
    assert taken[0].tokens + stream.result.tokens == recognizer.transcribe(whole, 16000).tokens


# -- INVALID audio: a clear AudioInputError naming the problem -----------------------------------

@dataclass(frozen=True)
class Invalid:
    """call(recognizer) must raise `error` with `needle` in its message."""

    id: str
    outcome: str
    call: Callable[[Recognizer], object]
    needle: str
    error: type[FramegateError] = AudioInputError


def _feed(recognizer: Recognizer, *blocks: tuple[int, object], finish_first: bool = False) -> None:
    stream = recognizer.create_stream()
    if finish_first:
        stream.input_finished()
    for rate, samples in blocks:
        stream.accept_waveform(rate, samples)
        recognizer.decode(stream)


ONE_S = np.zeros(16000, np.float32)

INVALID_AUDIO = [
    Invalid("empty_array", "transcribing a signal of 0 samples says it is empty",
            lambda r: r.transcribe(np.zeros(0, np.float32), 16000), "empty (0 samples)"),
    Invalid("empty_stereo", "(0, 2) is also an empty signal",
            lambda r: r.transcribe(np.zeros((0, 2), np.int16), 16000), "empty (0 samples)"),
    Invalid("nan_samples", "NaN samples are refused with their count and first frame",
            lambda r: r.transcribe(np.array([0.0, 0.1, np.nan, np.nan], np.float32), 16000),
            "contains 2 NaN and 0 infinite sample(s), the first at frame 2"),
    Invalid("inf_samples", "infinite samples are refused (not clipped: inf is not a loud sample)",
            lambda r: r.transcribe(np.array([0.0, np.inf, -np.inf], np.float64), 16000),
            "0 NaN and 2 infinite"),
    Invalid("nan_in_a_later_stream_block", "a NaN in a stream block is refused when that block arrives",
            lambda r: _feed(r, (16000, ONE_S), (16000, np.array([np.nan], np.float32))), "NaN"),
    Invalid("scalar", "a 0-D array is not a signal",
            lambda r: r.transcribe(np.float32(0.5), 16000), "got 0-D"),
    Invalid("three_dimensional", "a 3-D array names its shape",
            lambda r: r.transcribe(np.zeros((10, 2, 2), np.float32), 16000), "got 3-D shape (10, 2, 2)"),
    Invalid("channels_first", "(channels, frames) is refused with the hint to transpose",
            lambda r: r.transcribe(np.zeros((2, 16000), np.float32), 16000), "pass samples.T"),
    Invalid("zero_channels", "(frames, 0) has no channels to average",
            lambda r: r.transcribe(np.zeros((100, 0), np.float32), 16000), "zero channels"),
    Invalid("complex_dtype", "complex samples are not audio",
            lambda r: r.transcribe(np.zeros(100, np.complex64), 16000), "dtype complex64 is not audio"),
    Invalid("bool_dtype", "booleans are not audio",
            lambda r: r.transcribe(np.ones(100, bool), 16000), "dtype bool is not audio"),
    Invalid("python_int_list", "a list of Python ints has no sample width",
            lambda r: r.transcribe([0, 100, -100], 16000), "no sample width"),
    Invalid("ragged_list", "a ragged nested list cannot be an array of samples",
            lambda r: r.transcribe([[0.1, 0.2], [0.3]], 16000), "cannot be read as an array"),
    Invalid("zero_rate", "a sample rate of 0 Hz is out of range",
            lambda r: r.transcribe(ONE_S, 0), "0 Hz is outside the supported"),
    Invalid("negative_rate", "a negative sample rate is out of range",
            lambda r: r.transcribe(ONE_S, -16000), "-16000 Hz is outside"),
    Invalid("float_rate", "a fractional sample rate is refused, not rounded",
            lambda r: r.transcribe(ONE_S, 16000.5), "not an integer number of samples per second"),
    Invalid("rate_change_mid_stream", "one stream has one rate: a change is refused naming both",
            lambda r: _feed(r, (16000, ONE_S), (44100, ONE_S)), "from 16000 Hz to 44100 Hz"),
    Invalid("accept_after_input_finished", "audio after input_finished() is refused until reset()",
            lambda r: _feed(r, (16000, ONE_S), finish_first=True), "after input_finished()"),
]


@pytest.mark.parametrize("row", INVALID_AUDIO, ids=[r.id for r in INVALID_AUDIO])
def test_invalid_audio_is_refused_naming_the_problem(recognizer, row: Invalid):
    with pytest.raises(row.error) as caught:
        row.call(recognizer)
    assert row.needle in str(caught.value), row.outcome


# -- INVALID files through the CLI: one line, exit 2 ---------------------------------------------

def _nan_wav(path: Path) -> None:
    samples = np.zeros(48000, np.float32)
    samples[20000] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")


def _truncated_flac(path: Path) -> None:
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 4).astype(np.float32)
    sf.write(path.with_suffix(".full.flac"), noise, 16000)
    path.write_bytes(path.with_suffix(".full.flac").read_bytes()[:9000])


BAD_FILES: list[tuple[str, str, Callable[[Path], None], str]] = [
    # (id, outcome, make the file at path, needle in the one-line error)
    ("zero_byte_file", "a 0-byte file is empty", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("non_audio_bytes", "text or random bytes named .wav are not a readable audio file",
     lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "not a readable audio file"),
    ("header_without_samples", "a valid WAV header with no samples contains no samples",
     lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "contains no samples"),
    ("nan_in_float_wav", "a float WAV with a NaN names the file and the frame",
     _nan_wav, "first at frame 20000"),
    ("truncated_flac", "a FLAC cut mid-stream names the file when its decoder fails",
     _truncated_flac, "truncated.wav"),
    ("directory", "a directory given as a file is named as one", lambda p: p.mkdir(), "is a directory"),
    ("missing_file", "a path that does not exist", lambda p: None, "no such file"),
]


@pytest.mark.parametrize("kind, outcome, make, needle", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_invalid_audio_file_through_the_cli_is_one_line_exit_2(capsys, recognizer, tmp_path, kind, outcome,
                                                               make, needle):
    path = tmp_path / ("truncated.wav" if kind == "truncated_flac" else f"{kind}.wav")
    make(path)
    code, out, err = run_main(capsys, "transcribe", str(path), "--model", str(recognizer.bundle.path))
    assert out == ""
    assert_user_error(code, err, needle)


# -- INVALID bundles: BundleError naming the file and the disagreement (API and CLI) --------------

def _flip_byte(bundle: Path) -> None:
    data = bytearray((bundle / "encoder.onnx").read_bytes())
    data[len(data) // 3] ^= 0x5A
    (bundle / "encoder.onnx").write_bytes(bytes(data))


def _truncate(bundle: Path) -> None:
    (bundle / "joiner.onnx").write_bytes((bundle / "joiner.onnx").read_bytes()[:777])


def _swap_joiner_for_decoder(bundle: Path) -> None:
    shutil.copy(bundle / "decoder.onnx", bundle / "joiner.onnx")
    refresh_checksum(bundle, "joiner.onnx")


def _widen_joiner_dim(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["encoder"].__setitem__("joiner_dim", 32))


def _garbage_onnx_with_valid_checksum(bundle: Path) -> None:
    (bundle / "decoder.onnx").write_bytes(b"\x08\x07" + b"not a protobuf" * 20)
    refresh_checksum(bundle, "decoder.onnx")


def _field_of_wrong_type(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m["encoder"].__setitem__("chunk_frames", "8"))


BAD_BUNDLES: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("missing_directory", "a bundle path that does not exist", lambda b: shutil.rmtree(b), "no such directory"),
    ("file_instead_of_directory", "a file given as the bundle",
     lambda b: (shutil.rmtree(b), b.write_text("x")), "no such directory"),
    ("checksum_mismatch", "one flipped byte fails the SHA-256 check, naming the file",
     _flip_byte, "encoder.onnx: checksum mismatch"),
    ("truncated_graph", "a truncated graph is refused by its recorded size",
     _truncate, "joiner.onnx: 777 bytes, bundle.json records"),
    ("corrupt_graph_valid_checksum", "bytes that are not ONNX (checksums refreshed) name the graph",
     _garbage_onnx_with_valid_checksum, "decoder.onnx: ONNX Runtime cannot load it"),
    ("graph_disagrees_with_manifest", "a graph swapped for another one (decoder as joiner) is caught by its inputs",
     _swap_joiner_for_decoder, "joiner.onnx: has 1 inputs, expected 2"),
    ("manifest_disagrees_with_graph", "bundle.json's joiner_dim edited: the encoder's output dim disagrees",
     _widen_joiner_dim, "but bundle.json implies 32"),
    ("wrong_format_version", "another format version says found and supported",
     lambda b: edit_manifest(b, lambda m: m.__setitem__("format_version", 99)),
     "format_version 99; this engine supports version 1"),
    ("manifest_not_json", "an edited bundle.json that is no longer JSON",
     lambda b: (b / "bundle.json").write_text('{"format_version": 1,'), "bundle.json is not valid JSON"),
    ("manifest_field_of_wrong_type", "a field of the wrong type is named with its value",
     _field_of_wrong_type, "'encoder.chunk_frames' must be a int, found '8'"),
    ("features_zero_frame_shift", "a zero frame shift is refused at load (it once crashed the process with "
     "SIGFPE inside kaldi-native-fbank; found by test_bundle_properties)",
     lambda b: edit_manifest(b, lambda m: m["features"].__setitem__("frame_shift_ms", 0)),
     "features: FbankConfig.frame_shift_ms 0 is under one sample"),
    ("tokens_missing", "a listed file that is gone is named", lambda b: (b / "tokens.txt").unlink(),
     "tokens.txt is missing"),
]


@pytest.fixture
def damaged(tiny_bundle: Path, tmp_path: Path) -> Callable[[Callable[[Path], None]], Path]:
    def make(damage: Callable[[Path], None]) -> Path:
        bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
        damage(bundle)
        return bundle
    return make


@pytest.mark.parametrize("kind, outcome, damage, needle", BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES])
def test_invalid_bundle_is_refused_by_the_api_and_the_cli(capsys, damaged, clip, tmp_path, kind, outcome,
                                                          damage, needle):
    bundle = damaged(damage)
    with pytest.raises(BundleError) as caught:
        Recognizer(bundle)
    assert needle in str(caught.value), outcome
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, 16000)
    code, out, err = run_main(capsys, "transcribe", str(wav), "--model", str(bundle))
    assert out == ""
    assert_user_error(code, err, needle)

