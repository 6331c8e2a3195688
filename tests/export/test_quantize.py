"""int8 LSTM bundles: what changes (weights, ranges, bundle.json), what must not (the model's
output, within quantization error), and the refusals. Streaming equals offline for the int8
bundle is in tests/engine/test_stream.py, sherpa-onnx's equal tokens in test_sherpa_export.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import numpy_helper

from framegate.engine import offline
from framegate.engine.bundle import Bundle
from framegate.engine.cli import main
from framegate.engine.errors import BundleError
from framegate.export.quantize import MARGIN, calibration_audio, quantize_bundle


def op_types(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_lstm_weights_become_int8_and_the_rest_stays(tiny_bundle_int8):
    fp32 = tiny_bundle_int8.parent / "fp32"
    ops = op_types(tiny_bundle_int8 / "encoder.onnx")
    assert ops.count("DynamicQuantizeLSTM") == 2 and "LSTM" not in ops
    model = onnx.load(str(tiny_bundle_int8 / "encoder.onnx"))
    lstm_weights = {name for node in model.graph.node if node.op_type == "DynamicQuantizeLSTM" for name in node.input[1:3]}
    dtypes = {t.name: numpy_helper.to_array(t).dtype for t in model.graph.initializer if t.name in lstm_weights}
    assert len(dtypes) == 4 and set(dtypes.values()) == {np.dtype(np.int8)}
    for name in ("decoder.onnx", "joiner.onnx", "tokens.txt"):
        assert (tiny_bundle_int8 / name).read_bytes() == (fp32 / name).read_bytes()


def test_bundle_json_records_the_ranges_and_their_calibration(tiny_bundle_int8, speechlike_16k):
    record = json.loads((tiny_bundle_int8 / "bundle.json").read_text())["quantization"]
    first, second = record["lstm_input_range"]
    assert second == 1.0  # the second LSTM reads the first's output, |h| < 1
    assert first == pytest.approx(MARGIN * record["calibration"]["largest_input"][0])
    assert record["calibration"] | {"largest_input": None} == {
        "source": "speech-like test signal", "utterances": 1, "largest_input": None}
    assert 0 < record["calibration"]["largest_input"][1] < 1


def test_int8_encoder_output_stays_close_to_fp32(tiny_bundle_int8, speechlike_16k):
    fp32 = offline.encoder_output(Bundle.load(tiny_bundle_int8.parent / "fp32"), speechlike_16k)
    int8 = offline.encoder_output(Bundle.load(tiny_bundle_int8), speechlike_16k)
    error = np.abs(int8 - fp32).max(axis=1) / np.abs(fp32).max()
    # The first frames are within rounding of fp32: quantized (not a copy), yet the same model. Later
    # frames drift further, as the nudged random recurrence (weights x3) amplifies any difference.
    assert 0 < error[:2].max() < 0.05


def test_cli_quantizes_a_bundle_with_manifest_calibration(tiny_bundle_int8, speechlike_16k, tmp_path, capsys):
    sf.write(tmp_path / "a.wav", (speechlike_16k * 20000).astype(np.int16), 16000)  # int16 on disk
    sf.write(tmp_path / "b.flac", speechlike_16k[:16000], 16000)
    (tmp_path / "dev.jsonl").write_text('{"audio": "a.wav"}\n{"audio": "b.flac"}\n{"audio": "missing.wav"}\n')
    out = tmp_path / "q"
    assert main(["export", "--model", str(tiny_bundle_int8.parent / "fp32"), "--quantize", "int8", "--calibration",
                 str(tmp_path / "dev.jsonl"), "--calibration-utterances", "2", "--out", str(out)]) == 0
    calibration = json.loads((out / "bundle.json").read_text())["quantization"]["calibration"]
    assert calibration["utterances"] == 2 and calibration["source"].endswith("dev.jsonl (2 utterances)")
    Bundle.load(out)


def test_calibration_audio_reads_any_rate_as_16k(speechlike_16k, tmp_path):
    sf.write(tmp_path / "a.wav", np.stack([speechlike_16k[::2]] * 2, axis=1), 8000)
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav"}\n')
    audio, _ = calibration_audio(tmp_path / "m.jsonl", 10)
    (samples,) = list(audio)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(len(speechlike_16k), abs=2)


@pytest.mark.parametrize("arguments, message", [
    (["--quantize", "int8"], "go together"),
    (["--calibration", "x.jsonl"], "go together"),
    (["--quantize", "int8", "--calibration", "nowhere.jsonl"], "no such file"),
])
def test_cli_refuses_incomplete_quantization_arguments(tiny_bundle_int8, tmp_path, capsys, arguments, message):
    assert main(["export", "--model", str(tiny_bundle_int8.parent / "fp32"), *arguments, "--out", str(tmp_path / "q")]) == 2
    assert message in capsys.readouterr().err


def test_the_fp32_model_card_is_not_copied(tiny_bundle_int8, speechlike_16k, tmp_path):
    fp32 = tmp_path / "fp32"
    shutil.copytree(tiny_bundle_int8.parent / "fp32", fp32)
    (fp32 / "MODEL_CARD.md").write_text("WER 50 % (fp32)\n")
    out = quantize_bundle(fp32, tmp_path / "q", [speechlike_16k], "x")
    assert not (out / "MODEL_CARD.md").exists()  # its figures are the fp32 encoder's
    assert (out / "tokens.txt").exists()


def test_refuses_a_second_quantization_and_its_own_folder(tiny_bundle_int8, speechlike_16k, tmp_path):
    with pytest.raises(BundleError, match="already quantized"):
        quantize_bundle(tiny_bundle_int8, tmp_path / "q", [speechlike_16k], "x")
    fp32 = tmp_path / "fp32"
    shutil.copytree(tiny_bundle_int8.parent / "fp32", fp32)
    with pytest.raises(BundleError, match="another directory"):
        quantize_bundle(fp32, fp32, [speechlike_16k], "x")


def test_refuses_a_bundle_without_lstm_ops(tiny_bundle, speechlike_16k, tmp_path):
    with pytest.raises(BundleError, match="no LSTM op"):  # the projected LSTM is a spelled-out Loop
        quantize_bundle(tiny_bundle, tmp_path / "q", [speechlike_16k], "x")


def test_refuses_other_model_types(tiny_gated, speechlike_16k, tmp_path):
    _, bundle = tiny_gated["feature"]
    with pytest.raises(BundleError, match="lstm_transducer"):
        quantize_bundle(bundle, tmp_path / "q", [speechlike_16k], "x")


def test_calibration_without_audio_is_refused(tiny_bundle_int8, tmp_path):
    with pytest.raises(ValueError, match="at least one utterance"):
        quantize_bundle(tiny_bundle_int8.parent / "fp32", tmp_path / "q", [np.zeros(0, np.float32)], "x")
