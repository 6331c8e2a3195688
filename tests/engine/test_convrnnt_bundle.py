"""A ConvRNN-T bundle end to end: export, load, stream (C++ global CNN between two ONNX graphs)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.engine.cli import main
from framegate.engine.endpoint import EndpointConfig
from framegate.engine.errors import BundleError
from framegate.engine.offline import encoder_output, padded_features, recognize
from framegate.engine.recognizer import Recognizer


def test_bundle_records_the_global_cnn_weights_by_name(convrnnt_model_and_bundle):
    _, bundle = convrnnt_model_and_bundle
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["model_type"] == "convrnnt"
    names = [t["name"] for t in manifest["global_cnn"]["tensors"]]
    assert len(names) == 4 * 12 and names[0] == "global_cnn.block0.norm_weight"
    assert manifest["compute"]["parameters"] > 0 and manifest["compute"]["macs_per_second"] > 0


@pytest.mark.parametrize("fixture", ["convrnnt_model_and_bundle", "unprojected_convrnnt_model_and_bundle"])
def test_onnx_and_cpp_encoder_equals_the_torch_full_utterance_forward(fixture, speechlike_16k, request):
    import torch

    model, bundle_dir = request.getfixturevalue(fixture)
    recognizer = Recognizer(bundle_dir, endpoint=None)
    features = padded_features(recognizer.bundle, speechlike_16k)
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(features)[None])[0][0].numpy()
    np.testing.assert_allclose(encoder_output(recognizer.bundle, speechlike_16k), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fixture", ["convrnnt_model_and_bundle", "unprojected_convrnnt_model_and_bundle"])
@pytest.mark.parametrize("seed", range(4))
def test_streaming_equals_offline_for_random_blocks(fixture, speechlike_16k, stream_in_random_blocks, seed, request):
    _, bundle_dir = request.getfixturevalue(fixture)
    recognizer = Recognizer(bundle_dir, endpoint=None)
    stream = stream_in_random_blocks(recognizer, speechlike_16k, seed)

    offline = recognize(recognizer.bundle, speechlike_16k)
    assert offline.tokens, "the tiny model should emit something"
    assert [recognizer.bundle.tokens[t] for t in offline.tokens] == stream.result.tokens


def test_endpoint_starts_a_fresh_global_cnn_state(convrnnt_model_and_bundle, speechlike_16k,
                                                  stream_until_endpoint):
    _, bundle_dir = convrnnt_model_and_bundle
    recognizer = Recognizer(bundle_dir, endpoint=EndpointConfig())
    stream, _ = stream_until_endpoint(recognizer, speechlike_16k)
    state = stream.utterance.encoder_state
    assert state.global_cnn.frames == 0
    assert not state.local_cache.any() and not state.lstm.h.any()


def test_transcribe_cli_runs_a_convrnnt_bundle(convrnnt_model_and_bundle, speechlike_16k, tmp_path, capsys):
    _, bundle_dir = convrnnt_model_and_bundle
    path = tmp_path / "speech.wav"
    sf.write(path, speechlike_16k, 16000)
    code = main(["transcribe", str(path), "--model", str(bundle_dir), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    expected = Recognizer(bundle_dir).transcribe(speechlike_16k, 16000).text
    assert json.loads(out.strip().splitlines()[-1])["text"] == expected


def test_bundle_whose_weight_record_disagrees_is_refused(convrnnt_model_and_bundle, tmp_path):
    _, bundle_dir = convrnnt_model_and_bundle
    broken = Path(shutil.copytree(bundle_dir, tmp_path / "broken"))
    manifest = json.loads((broken / "bundle.json").read_text())
    manifest["global_cnn"]["tensors"][5]["shape"] = [99]
    (broken / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="global_cnn.block0.dw_bias"):
        Recognizer(broken)
