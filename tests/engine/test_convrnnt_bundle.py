"""A ConvRNN-T bundle end to end: export, load, stream (C++ global CNN between two ONNX graphs)."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from framegate.engine.cli import main
from framegate.engine.endpoint import EndpointConfig
from framegate.engine.errors import BundleError
from framegate.engine.offline import encoder_output, padded_features, recognize
from framegate.engine.recognizer import Recognizer


@pytest.fixture(scope="module")
def convrnnt_model_and_bundle(tmp_path_factory, tiny_checkpoint):
    """A tiny random ConvRNN-T, nudged (as the LSTM fixture) so it both emits and stays silent."""
    import torch

    from framegate.export.models.convrnnt import ConvRnnt, ConvRnntConfig
    from framegate.export.onnx_export import export_bundle

    tokens = tiny_checkpoint.parent / "tokens.txt"  # the shared tiny fixture's vocabulary
    vocab = len(tokens.read_text(encoding="utf-8").splitlines())
    torch.manual_seed(4321)
    cfg = ConvRnntConfig(vocab_size=vocab, conv_channels=4, frontend_dim=12, local_channels=6, local_kernel=3,
                         local_layers=2, global_channels=8, global_hidden=10, global_blocks=4, se_hidden=3,
                         d_model=16, rnn_hidden_size=24, num_layers=1, joiner_dim=16, decoder_dim=16, dropout=0.0)
    model = ConvRnnt(cfg)
    with torch.no_grad():
        model.encoder.feature_mean.fill_(-11.0)
        model.encoder.feature_inv_std.fill_(1 / 7.0)
        for name, param in model.encoder.lstm.named_parameters():
            if name.startswith("weight"):
                param.mul_(3.0)
        model.encoder.out.weight.mul_(8.0)
        model.joiner.out.weight.mul_(3.0)
        model.joiner.out.bias[0] += 3.5
    work = tmp_path_factory.mktemp("convrnnt")
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg), "model_type": "convrnnt"},
               work / "weights.pt")
    bundle = export_bundle(work / "weights.pt", work / "bundle", tokens=tokens, model_card={"purpose": "tests"})
    return model.eval(), bundle


def test_bundle_records_the_global_cnn_weights_by_name(convrnnt_model_and_bundle):
    _, bundle = convrnnt_model_and_bundle
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["model_type"] == "convrnnt"
    names = [t["name"] for t in manifest["global_cnn"]["tensors"]]
    assert len(names) == 4 * 10 and names[0] == "global_cnn.block0.pw1_weight"
    assert manifest["compute"]["parameters"] > 0 and manifest["compute"]["macs_per_second"] > 0


def test_onnx_and_cpp_encoder_equals_the_torch_full_utterance_forward(convrnnt_model_and_bundle, speechlike_16k):
    import torch

    model, bundle_dir = convrnnt_model_and_bundle
    recognizer = Recognizer(bundle_dir, endpoint=None)
    features = padded_features(recognizer.bundle, speechlike_16k)
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(features)[None])[0][0].numpy()
    np.testing.assert_allclose(encoder_output(recognizer.bundle, speechlike_16k), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_streaming_equals_offline_for_random_blocks(convrnnt_model_and_bundle, speechlike_16k, seed):
    _, bundle_dir = convrnnt_model_and_bundle
    recognizer = Recognizer(bundle_dir, endpoint=None)
    rng = np.random.default_rng(seed)
    stream = recognizer.create_stream()
    pos = 0
    while pos < len(speechlike_16k):
        size = int(rng.integers(1, 9000))
        stream.accept_waveform(16000, speechlike_16k[pos:pos + size])
        recognizer.decode(stream)
        pos += size
    stream.input_finished()
    recognizer.decode(stream)

    offline = recognize(recognizer.bundle, speechlike_16k)
    assert offline.tokens, "the tiny model should emit something"
    assert [recognizer.bundle.tokens[t] for t in offline.tokens] == stream.result.tokens


def test_endpoint_starts_a_fresh_global_cnn_state(convrnnt_model_and_bundle, speechlike_16k):
    _, bundle_dir = convrnnt_model_and_bundle
    recognizer = Recognizer(bundle_dir, endpoint=EndpointConfig())
    stream = recognizer.create_stream()
    for start in range(0, len(speechlike_16k), 160):
        stream.accept_waveform(16000, speechlike_16k[start:start + 160])
        recognizer.decode(stream)
        if stream.is_endpoint:
            break
    assert stream.is_endpoint
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
    manifest["global_cnn"]["tensors"][3]["shape"] = [99]
    (broken / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="global_cnn.block0.dw_bias"):
        Recognizer(broken)
