"""The exported graphs compute what the torch model computes, in sherpa-onnx's layout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from framegate.engine.features import FbankConfig, compute_fbank
from framegate.export.exportable_lstm import exportable_lstm
from framegate.export.onnx_export import load_model

TOL = 1e-4


@pytest.fixture(scope="module")
def model(tiny_checkpoint: Path):
    return load_model(tiny_checkpoint)


def session(bundle: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("proj_size", [7, 0])
def test_lstm_rewrite_equals_nn_lstm(proj_size: int):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 20, num_layers=3, batch_first=True, proj_size=proj_size).eval()
    x = torch.randn(3, 9, 12)
    h, c = torch.randn(3, 3, proj_size or 20), torch.randn(3, 3, 20)
    with torch.no_grad():
        want, (want_h, want_c) = lstm(x, (h, c))
        got, got_h, got_c = exportable_lstm(lstm)(x, h, c)
    for a, b in ((got, want), (got_h, want_h), (got_c, want_c)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("lstm", ["projected", "plain"])
def test_encoder_matches_torch_with_nonzero_state_and_any_length(lstm: str, model, tiny_bundle: Path,
                                                                 plain_lstm_model_and_bundle):
    if lstm == "plain":
        model, tiny_bundle = plain_lstm_model_and_bundle
        ops = {node.op_type for node in onnx.load(str(tiny_bundle / "encoder.onnx")).graph.node}
        assert "LSTM" in ops and "Loop" not in ops
    cfg = model.cfg
    enc = session(tiny_bundle, "encoder.onnx")
    gen = torch.Generator().manual_seed(1)
    for batch, frames in ((1, cfg.window_frames), (2, 5 * cfg.chunk_frames + 3), (3, 7)):
        x = torch.randn(batch, frames, 80, generator=gen) * 3 - 8
        h = torch.randn(cfg.num_layers, batch, cfg.d_model, generator=gen)
        c = torch.randn(cfg.num_layers, batch, cfg.rnn_hidden_size, generator=gen)
        with torch.no_grad():
            want, (want_h, want_c) = model.encoder(x, (h, c))
        got = enc.run(None, {"x": x.numpy(), "h": h.numpy(), "c": c.numpy()})
        for a, b in zip(got, (want, want_h, want_c)):
            np.testing.assert_allclose(a, b.numpy(), atol=TOL)


def test_decoder_matches_torch_including_start_contexts(model, tiny_bundle: Path):
    dec = session(tiny_bundle, "decoder.onnx")
    y = torch.tensor([[-1, -1], [-1, 0], [5, 7], [29, 1]], dtype=torch.int64)
    with torch.no_grad():
        want = model.decoder(y.unsqueeze(1)).squeeze(1)
    (got,) = dec.run(None, {"y": y.numpy()})
    np.testing.assert_allclose(got, want.numpy(), atol=TOL)


def test_joiner_matches_torch(model, tiny_bundle: Path):
    joiner = session(tiny_bundle, "joiner.onnx")
    gen = torch.Generator().manual_seed(2)
    enc, dec = torch.randn(5, model.cfg.joiner_dim, generator=gen), torch.randn(5, model.cfg.joiner_dim, generator=gen)
    with torch.no_grad():
        want = model.joiner(enc, dec)
    (got,) = joiner.run(None, {"encoder_out": enc.numpy(), "decoder_out": dec.numpy()})
    np.testing.assert_allclose(got, want.numpy(), atol=TOL)


def test_graphs_carry_sherpa_onnx_metadata(model, tiny_bundle: Path):
    cfg = model.cfg
    enc_meta = {p.key: p.value for p in onnx.load(str(tiny_bundle / "encoder.onnx")).metadata_props}
    assert enc_meta == {"model_type": "lstm", "num_encoder_layers": str(cfg.num_layers),
                        "T": str(cfg.window_frames), "decode_chunk_len": str(cfg.chunk_frames),
                        "d_model": str(cfg.d_model), "rnn_hidden_size": str(cfg.rnn_hidden_size)}
    dec_meta = {p.key: p.value for p in onnx.load(str(tiny_bundle / "decoder.onnx")).metadata_props}
    assert dec_meta == {"vocab_size": str(cfg.vocab_size), "context_size": str(cfg.context_size)}


def test_bundle_json_records_geometry_and_silence_pad_value(model, tiny_bundle: Path):
    manifest = json.loads((tiny_bundle / "bundle.json").read_text())
    assert manifest["format_version"] == 1 and manifest["model_type"] == "lstm_transducer"
    assert manifest["features"] == FbankConfig().to_dict()
    encoder = manifest["encoder"]
    assert encoder["window_frames"] == model.cfg.chunk_frames + 3 and encoder["subsampling"] == 4
    silence = compute_fbank(np.zeros(4000, dtype=np.float32))
    assert np.all(silence == np.float32(encoder["pad_value"]))
    assert set(manifest["files"]) == {"encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"}
    assert manifest["model_card"] == {"purpose": "tests", "weights": "random"}
