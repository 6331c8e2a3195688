"""`framegate export --chunk-frames N`: the same weights streamed in other windows give the same result.

For the LSTM transducer and the ConvRNN-T the chunk is only how many fbank frames each encoder
call takes (export/onnx_export.py, CHUNK_FREE_MODEL_TYPES), so a bundle exported at chunk 4
must stream exactly the encoder frames and tokens of the checkpoint's own chunk-8 bundle.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import pytest

from framegate.engine.cli import main
from framegate.engine.features import FbankConfig, compute_fbank
from framegate.engine.recognizer import Recognizer

TOL = 1e-5  # of the frames' scale


def _assert_same_frames(actual: np.ndarray, desired: np.ndarray) -> None:
    """Equal up to float32 rounding. The kernels (chosen per CPU and shape) may sum a 7-frame and
    an 11-frame window's convolutions in another order (seen on an AMD EPYC: ulp-level
    differences in the first frame, grown through the recurrence to 2.4e-5 on frames of
    magnitude 10), so the bound scales with the frames; a wrong frame or state is off by the
    frames' own magnitude."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=TOL * float(np.abs(desired).max()))


def _same_tail_padding(samples_16k: np.ndarray) -> np.ndarray:
    """The longest prefix (whole 10 ms hops cut) whose fbank frame count F has F - 3 divisible by 8,
    so chunk 4 and chunk 8 need the same tail padding (none) and end on the same encoder frame."""
    hop_samples = round(FbankConfig().frame_shift_ms * 16)  # 16 samples per ms at 16 kHz
    cut_frames = (len(compute_fbank(samples_16k)) - 3) % 8
    trimmed = samples_16k[:len(samples_16k) - cut_frames * hop_samples]
    assert (len(compute_fbank(trimmed)) - 3) % 8 == 0
    return trimmed


def _streamed(bundle: Path, samples_16k: np.ndarray, seed: int, stream_in_random_blocks, capture_encoder_frames
              ) -> tuple[np.ndarray, list[str], str]:
    """Stream `samples_16k` in seeded random blocks: (every encoder frame the engine computed, tokens, text)."""
    recognizer = Recognizer(bundle, endpoint=None)
    with capture_encoder_frames(recognizer) as frames:
        stream = stream_in_random_blocks(recognizer, samples_16k, seed)
    return np.concatenate(frames), stream.result.tokens, stream.result.text


def _encoder_geometry(bundle: Path) -> tuple[dict, dict]:
    """(bundle.json's encoder section, the encoder graph's sherpa-onnx metadata)."""
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    graph = "encoder.onnx" if manifest["model_type"] == "lstm_transducer" else "frontend.onnx"
    metadata = {p.key: p.value for p in onnx.load(str(bundle / graph)).metadata_props}
    return manifest["encoder"], metadata


@pytest.fixture(scope="module")
def convrnnt_bundles(convrnnt_model_and_bundle, tiny_checkpoint: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny ConvRNN-T's chunk-8 bundle and the same weights exported at chunk 4."""
    import torch

    from framegate.export.onnx_export import export_bundle

    model, bundle8 = convrnnt_model_and_bundle
    work = tmp_path_factory.mktemp("convrnnt_chunk4")
    checkpoint = work / "weights.pt"
    torch.save({"model": model.state_dict(), "model_config": asdict(model.cfg), "model_type": "convrnnt"}, checkpoint)
    bundle4 = export_bundle(checkpoint, work / "bundle", tokens=tiny_checkpoint.parent / "tokens.txt",
                            chunk_frames=4)
    return bundle8, bundle4


@pytest.fixture(params=["lstm_transducer", "convrnnt"])
def bundles(request) -> tuple[Path, Path]:
    """(chunk-8 bundle, chunk-4 bundle of the same weights) per supported model type."""
    if request.param == "lstm_transducer":
        return request.getfixturevalue("tiny_bundle"), request.getfixturevalue("tiny_bundle_chunk4")
    return request.getfixturevalue("convrnnt_bundles")


def test_chunk_4_export_records_its_window_geometry(bundles):
    bundle8, bundle4 = bundles
    enc8, meta8 = _encoder_geometry(bundle8)
    enc4, meta4 = _encoder_geometry(bundle4)
    assert (enc8["window_frames"], enc8["chunk_frames"], enc8["lookahead_frames"]) == (11, 8, 3)
    assert (enc4["window_frames"], enc4["chunk_frames"], enc4["lookahead_frames"]) == (7, 4, 3)
    assert {k: v for k, v in enc4.items() if k not in ("window_frames", "chunk_frames")} == \
        {k: v for k, v in enc8.items() if k not in ("window_frames", "chunk_frames")}
    if "decode_chunk_len" in meta8:  # the LSTM encoder carries sherpa-onnx's window metadata
        assert (meta8["T"], meta8["decode_chunk_len"]) == ("11", "8")
        assert (meta4["T"], meta4["decode_chunk_len"]) == ("7", "4")
    else:  # the ConvRNN-T's graphs carry no window geometry
        assert meta4 == meta8
    assert Recognizer(bundle4).bundle.encoder.window_frames == 7  # the engine checks its graphs against it


@pytest.mark.parametrize("seed", range(3))
def test_chunk_4_streams_the_encoder_frames_and_tokens_of_chunk_8(bundles, speechlike_16k, stream_in_random_blocks,
                                                                  capture_encoder_frames, seed):
    bundle8, bundle4 = bundles
    audio = _same_tail_padding(speechlike_16k)
    frames8, tokens8, text8 = _streamed(bundle8, audio, seed, stream_in_random_blocks, capture_encoder_frames)
    frames4, tokens4, text4 = _streamed(bundle4, audio, seed + 100, stream_in_random_blocks, capture_encoder_frames)
    assert len(tokens8) > 5, "the tiny model should emit something"
    assert frames4.shape == frames8.shape
    _assert_same_frames(frames4, frames8)
    assert tokens4 == tokens8 and text4 == text8


def test_chunk_4_frames_are_a_prefix_when_the_tail_padding_differs(bundles, speechlike_16k, stream_in_random_blocks,
                                                                   capture_encoder_frames):
    """An odd length: chunk 8 pads its last window further, so it may add one encoder frame of
    mostly padding; every frame chunk 4 computes is one chunk 8 computes."""
    bundle8, bundle4 = bundles
    frames8, _, _ = _streamed(bundle8, speechlike_16k, 5, stream_in_random_blocks, capture_encoder_frames)
    frames4, _, _ = _streamed(bundle4, speechlike_16k, 6, stream_in_random_blocks, capture_encoder_frames)
    assert len(frames8) - 1 <= len(frames4) <= len(frames8)
    _assert_same_frames(frames4, frames8[:len(frames4)])


@pytest.mark.parametrize("value", ["6", "0", "-4"])
def test_a_chunk_that_is_not_a_positive_multiple_of_the_subsampling_is_one_line_error(tiny_checkpoint, tmp_path,
                                                                                        capsys, value):
    code = main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"),
                 "--chunk-frames", value])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"positive multiple of the model's subsampling 4, got {value}" in err
    assert not (tmp_path / "b").exists()


def test_the_cli_exports_the_chosen_chunk(tiny_checkpoint, tiny_bundle_chunk4, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"),
                 "--chunk-frames", "4"]) == 0
    for name in ("encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"):
        assert (tmp_path / "b" / name).read_bytes() == (tiny_bundle_chunk4 / name).read_bytes()
    assert _encoder_geometry(tmp_path / "b") == _encoder_geometry(tiny_bundle_chunk4)


@pytest.mark.parametrize("model_type", ["gated_transformer", "sts"])
def test_models_whose_chunk_is_not_verified_free_keep_their_chunk(model_type, request, tmp_path, capsys):
    checkpoint = (request.getfixturevalue("tiny_gated")["feature"] if model_type == "gated_transformer"
                  else request.getfixturevalue("tiny_sts"))[0]
    code = main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b"), "--chunk-frames", "8"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"a {model_type} model keeps its checkpoint's chunk_frames" in err


def test_a_bundle_source_cannot_change_its_chunk(tiny_bundle, tmp_path, capsys):
    code = main(["export", "--format", "sherpa-onnx", "--model", str(tiny_bundle), "--out", str(tmp_path / "s"),
                 "--chunk-frames", "4"])
    assert code == 2
    assert "--chunk-frames applies when exporting from --checkpoint" in capsys.readouterr().err
