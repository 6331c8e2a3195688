"""What every bundle export writes the same way, whatever the encoder.

Each model's export module (onnx_export for the LSTM, convrnnt_export, gated_transformer_export,
sts_export, speaker_export) writes its own encoder graphs and its own bundle.json sections; the
parts all of them share live here, so a bundle's common contract (DESIGN.md, "The bundle") has one
writer: the graph export and its sherpa-onnx metadata, the decoder and joiner graphs, tokens.txt,
the bundle.json keys the engine checks for every model type, the file checksums, and the
"weights as ONNX initializers" graph that C++ kernels read their weights from.
"""
from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import torch
import torch.nn as nn

from framegate.engine.bundle import file_record
from framegate.engine.features import SAMPLE_RATE, FbankConfig, compute_fbank
from framegate.export.models.lstm_transducer import SUBSAMPLING
from framegate.export.tokenizer import BLANK_ID

FORMAT_VERSION = 1
OPSET = 17
# The weights graph's internal name. It was first written for the ConvRNN-T's global CNN and is
# kept for every weights graph so that bundles stay byte-identical (their checksums included).
WEIGHTS_GRAPH_NAME = "global_cnn_weights"


class TransducerConfig(Protocol):
    """The config fields every transducer's bundle records (all model configs have them)."""

    num_bins: int
    window_frames: int
    chunk_frames: int
    context_size: int
    vocab_size: int
    joiner_dim: int


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


def model_features(num_bins: int) -> FbankConfig:
    """The engine's feature config, once the model's input size agrees with it."""
    features = FbankConfig()
    if num_bins != features.num_bins:
        raise ValueError(f"model expects {num_bins} bins, features give {features.num_bins}")
    return features


def lstm_states(num_layers: int, d_model: int, rnn_hidden_size: int) -> list[dict]:
    """bundle.json's state entries of an LSTM stack in sherpa-onnx's layout (layers, N, size)."""
    return [{"name": "h", "shape": [num_layers, 1, d_model]},
            {"name": "c", "shape": [num_layers, 1, rnn_hidden_size]}]


def check_tokens(tokens: Path, vocab_size: int) -> None:
    """tokens.txt has one line per output of the joiner, and id BLANK_ID is <blk>."""
    lines = [line for line in tokens.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != vocab_size:
        raise ValueError(f"{tokens} has {len(lines)} tokens but the model's vocab_size is {vocab_size}")
    if lines[BLANK_ID].rsplit(" ", 1)[0] != "<blk>":
        raise ValueError(f"{tokens}: id {BLANK_ID} must be <blk>")


def export_graph(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                 dynamic_axes: dict[str, dict[int, str]]) -> None:
    """torch -> ONNX with the TorchScript exporter (sherpa-onnx's contract needs its fixed names)."""
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic_axes, opset_version=OPSET)


def finish_graph(path: Path, metadata: dict[str, int | str], output_dims: dict[str, list[int | str]]) -> None:
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


class DecoderGraph(nn.Module):
    """y (N, context_size) int64 -> (N, joiner_dim); the contract has no U axis."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(y.unsqueeze(1)).squeeze(1)


def export_prediction_graphs(model: nn.Module, out_dir: Path) -> None:
    """decoder.onnx and joiner.onnx, the same contract for every transducer (model.decoder, model.joiner)."""
    cfg: TransducerConfig = model.cfg
    y = torch.full((1, cfg.context_size), -1, dtype=torch.int64)
    export_graph(DecoderGraph(model).eval(), (y,), out_dir / "decoder.onnx", ["y"], ["decoder_out"],
                 {"y": {0: "N"}, "decoder_out": {0: "N"}})
    finish_graph(out_dir / "decoder.onnx", {"vocab_size": cfg.vocab_size, "context_size": cfg.context_size},
                 {"decoder_out": ["N", cfg.joiner_dim]})
    enc_out = torch.zeros(1, cfg.joiner_dim)
    export_graph(model.joiner.eval(), (enc_out, enc_out), out_dir / "joiner.onnx", ["encoder_out", "decoder_out"],
                 ["logits"], {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logits": {0: "N"}})
    finish_graph(out_dir / "joiner.onnx", {}, {"logits": ["N", cfg.vocab_size]})


def write_weights_graph(tensors: dict[str, np.ndarray], path: Path) -> None:
    """A graph with no inputs whose initializers are `tensors`, each also an output of that name.

    C++ kernels take their weights from here: the engine reads them through ONNX Runtime by the
    names and shapes bundle.json lists, so ONNX stays the single source of truth.
    """
    initializers = [onnx.numpy_helper.from_array(a, name) for name, a in tensors.items()]
    outputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(a.shape))
               for name, a in tensors.items()]
    graph = onnx.helper.make_graph([], WEIGHTS_GRAPH_NAME, [], outputs, initializer=initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def copy_tokens(tokens: Path, out_dir: Path) -> None:
    """tokens.txt into the bundle, unless it is already the bundle's own."""
    if Path(tokens).resolve() != (out_dir / "tokens.txt").resolve():
        shutil.copyfile(tokens, out_dir / "tokens.txt")


def base_manifest(model_type: str, cfg: TransducerConfig, features: FbankConfig, encoder: dict,
                  sections: dict | None = None) -> dict:
    """The bundle.json keys every transducer bundle has, in the order they are written.

    format_version, model_type, sample_rate, features, then "encoder": the window geometry and
    the tail pad value, followed by the model's own `encoder` keys; then the model's own
    `sections` (e.g. "global_cnn", "gating") and "decoder". The caller adds what follows
    ("states", "compute", ...) and hands the result to `write_manifest`.
    """
    return {
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "sample_rate": SAMPLE_RATE,
        "features": features.to_dict(),
        "encoder": {
            "window_frames": cfg.window_frames,
            "chunk_frames": cfg.chunk_frames,
            "lookahead_frames": cfg.window_frames - cfg.chunk_frames,
            "subsampling": SUBSAMPLING,
            "pad_value": silence_log_mel(features),
            **encoder,
        },
        **(sections or {}),
        "decoder": {"context_size": cfg.context_size, "vocab_size": cfg.vocab_size, "blank_id": BLANK_ID},
    }


def write_manifest(out_dir: Path, manifest: dict, files: Iterable[str], model_card: dict | None) -> None:
    """Write bundle.json: `manifest`, then the checksums of `files` (already written) and the model card."""
    manifest = {**manifest,
                "files": {name: file_record(out_dir / name) for name in files},
                "model_card": dict(model_card or {})}
    (out_dir / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
