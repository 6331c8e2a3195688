"""Export a trained LSTM transducer checkpoint to a bundle the engine (and sherpa-onnx) loads.

A bundle is a directory: encoder.onnx, decoder.onnx, joiner.onnx, tokens.txt and
bundle.json (DESIGN.md, "The bundle"). The graphs follow sherpa-onnx's online LSTM
transducer contract (inputs and outputs by position, integer metadata), so the same files
run in both engines. bundle.json records everything the engine must agree on before it
runs a frame: features, window geometry, the tail pad value, state shapes, checksums.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn

from framegate.engine.features import SAMPLE_RATE, FbankConfig, compute_fbank
from framegate.export.compute_cost import encoder_macs_per_second, parameter_count
from framegate.export.exportable_lstm import ExportableEncoder
from framegate.export.models import model_classes
from framegate.export.models.lstm_transducer import SUBSAMPLING, LstmTransducer
from framegate.export.tokenizer import BLANK_ID

FORMAT_VERSION = 1
MODEL_TYPE = "lstm_transducer"
OPSET = 17
ONNX_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx")


def load_model(checkpoint: Path) -> nn.Module:
    """The eval-mode model from a weights-only checkpoint (or a training checkpoint)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "model_config" in state:
        config = state["model_config"]
    elif "config" in state and "model" in state["config"]:
        config = state["config"]["model"]
    else:
        raise ValueError(f"{checkpoint}: no model_config in the checkpoint")
    model_type = state.get("model_type") or state.get("config", {}).get("model_type", "lstm_transducer")
    model_class, config_class = model_classes(model_type)
    model = model_class(config_class(**config))
    model.load_state_dict(state["model"])
    return model.eval()


def silence_log_mel(config: FbankConfig) -> float:
    """The log-mel value kaldi-native-fbank gives for digital silence with these options.

    The stream pads the utterance tail with this value, so padding looks like silence
    to the encoder rather than like an arbitrary constant.
    """
    frames = compute_fbank(np.zeros(SAMPLE_RATE // 10, dtype=np.float32), config)
    value = float(frames[0, 0])
    if not np.all(frames == value):
        raise ValueError("fbank of all-zero input is not one constant; set dither to 0")
    return value


class _DecoderGraph(nn.Module):
    """y (N, context_size) int64 -> (N, joiner_dim); the contract has no U axis."""

    def __init__(self, model: LstmTransducer) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(y.unsqueeze(1)).squeeze(1)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic_axes: dict[str, dict[int, str]]) -> None:
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=OPSET)


def _finish_graph(path: Path, metadata: dict[str, int | str], output_dims: dict[str, list[int | str]]) -> None:
    """Add sherpa-onnx's metadata and write concrete output shapes the exporter left symbolic."""
    model = onnx.load(str(path))
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    for output in model.graph.output:
        if output.name in output_dims:
            dims = output.type.tensor_type.shape.dim
            for dim, value in zip(dims, output_dims[output.name]):
                if isinstance(value, int):
                    dim.dim_value = value
                else:
                    dim.dim_param = value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _file_record(path: Path) -> dict[str, int | str]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _check_tokens(tokens: Path, vocab_size: int) -> None:
    lines = [line for line in tokens.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != vocab_size:
        raise ValueError(f"{tokens} has {len(lines)} tokens but the model's vocab_size is {vocab_size}")
    if lines[BLANK_ID].rsplit(" ", 1)[0] != "<blk>":
        raise ValueError(f"{tokens}: id {BLANK_ID} must be <blk>")


@torch.no_grad()
def export_bundle(checkpoint: Path, out_dir: Path, tokens: Path | None = None,
                  model_card: dict | None = None) -> Path:
    """Write the bundle for `checkpoint` into `out_dir` and return `out_dir`.

    `tokens` defaults to the tokens.txt beside the checkpoint (the training work dir).
    `model_card` is free-form provenance (data, training time, WERs) copied into bundle.json.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    tokens = Path(tokens) if tokens is not None else checkpoint.parent / "tokens.txt"
    model = load_model(checkpoint)
    if type(model).__name__ == "SeparatorTransducerSegmenter":  # two channels, turn tokens (issue 8)
        from framegate.export.sts_export import export_sts_bundle

        return export_sts_bundle(model, out_dir, tokens, model_card)
    if type(model).__name__ == "GatedTransformer":  # its own graphs, C++ weights and bundle.json
        from framegate.export.gated_transformer_export import export_gated_bundle

        return export_gated_bundle(model, out_dir, tokens, model_card)
    if not isinstance(model, LstmTransducer):  # e.g. a ConvRNN-T: its own graphs and bundle.json
        from framegate.export.convrnnt_export import export_convrnnt_bundle

        return export_convrnnt_bundle(model, out_dir, tokens, model_card)
    cfg = model.cfg
    _check_tokens(tokens, cfg.vocab_size)
    features = FbankConfig()
    if cfg.num_bins != features.num_bins:
        raise ValueError(f"model expects {cfg.num_bins} bins, features give {features.num_bins}")
    out_dir.mkdir(parents=True, exist_ok=True)

    h = torch.zeros(cfg.num_layers, 1, cfg.d_model)
    c = torch.zeros(cfg.num_layers, 1, cfg.rnn_hidden_size)
    x = torch.zeros(1, cfg.window_frames, cfg.num_bins)
    _export(ExportableEncoder(model.encoder).eval(), (x, h, c), out_dir / "encoder.onnx",
            ["x", "h", "c"], ["encoder_out", "new_h", "new_c"],
            {"x": {0: "N", 1: "T"}, "h": {1: "N"}, "c": {1: "N"},
             "encoder_out": {0: "N", 1: "T_out"}, "new_h": {1: "N"}, "new_c": {1: "N"}})
    _finish_graph(out_dir / "encoder.onnx",
                  {"model_type": "lstm", "num_encoder_layers": cfg.num_layers, "T": cfg.window_frames,
                   "decode_chunk_len": cfg.chunk_frames, "d_model": cfg.d_model,
                   "rnn_hidden_size": cfg.rnn_hidden_size},
                  {"encoder_out": ["N", "T_out", cfg.joiner_dim],
                   "new_h": [cfg.num_layers, "N", cfg.d_model],
                   "new_c": [cfg.num_layers, "N", cfg.rnn_hidden_size]})

    y = torch.full((1, cfg.context_size), -1, dtype=torch.int64)
    _export(_DecoderGraph(model).eval(), (y,), out_dir / "decoder.onnx", ["y"], ["decoder_out"],
            {"y": {0: "N"}, "decoder_out": {0: "N"}})
    _finish_graph(out_dir / "decoder.onnx", {"vocab_size": cfg.vocab_size, "context_size": cfg.context_size},
                  {"decoder_out": ["N", cfg.joiner_dim]})

    enc_out = torch.zeros(1, cfg.joiner_dim)
    _export(model.joiner.eval(), (enc_out, enc_out), out_dir / "joiner.onnx",
            ["encoder_out", "decoder_out"], ["logits"],
            {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logits": {0: "N"}})
    _finish_graph(out_dir / "joiner.onnx", {}, {"logits": ["N", cfg.vocab_size]})

    if tokens.resolve() != (out_dir / "tokens.txt").resolve():
        shutil.copyfile(tokens, out_dir / "tokens.txt")

    manifest = {
        "format_version": FORMAT_VERSION,
        "model_type": MODEL_TYPE,
        "sample_rate": SAMPLE_RATE,
        "features": features.to_dict(),
        "encoder": {
            "window_frames": cfg.window_frames,
            "chunk_frames": cfg.chunk_frames,
            "lookahead_frames": cfg.window_frames - cfg.chunk_frames,
            "subsampling": SUBSAMPLING,
            "pad_value": silence_log_mel(features),
            "num_layers": cfg.num_layers,
            "d_model": cfg.d_model,
            "rnn_hidden_size": cfg.rnn_hidden_size,
            "joiner_dim": cfg.joiner_dim,
        },
        "decoder": {"context_size": cfg.context_size, "vocab_size": cfg.vocab_size, "blank_id": BLANK_ID},
        "states": [
            {"name": "h", "shape": [cfg.num_layers, 1, cfg.d_model]},
            {"name": "c", "shape": [cfg.num_layers, 1, cfg.rnn_hidden_size]},
        ],
        "compute": {"parameters": parameter_count(model),
                    "macs_per_second": encoder_macs_per_second(model, cfg.num_bins)},
        "files": {name: _file_record(out_dir / name) for name in (*ONNX_FILES, "tokens.txt")},
        "model_card": dict(model_card or {}),
    }
    (out_dir / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir
