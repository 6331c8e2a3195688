"""Export a trained LSTM transducer checkpoint to a bundle the engine (and sherpa-onnx) loads.

A bundle is a directory: encoder.onnx, decoder.onnx, joiner.onnx, tokens.txt and
bundle.json (DESIGN.md, "The bundle"). The graphs follow sherpa-onnx's online LSTM
transducer contract (inputs and outputs by position, integer metadata), so the same files
run in both engines. bundle.json records everything the engine must agree on before it
runs a frame: features, window geometry, the tail pad value, state shapes, checksums.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from framegate.export.bundle_writer import (base_manifest, check_tokens, copy_tokens, export_graph,
                                            export_prediction_graphs, finish_graph, lstm_states, model_features,
                                            write_manifest)
from framegate.export.compute_cost import encoder_macs_per_second, parameter_count
from framegate.export.exportable_lstm import ExportableEncoder
from framegate.export.models import model_classes
from framegate.export.models.lstm_transducer import SUBSAMPLING, LstmTransducer

MODEL_TYPE = "lstm_transducer"
ONNX_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx")
# Model types whose streamed output does not depend on the chunk: the conv subsampling has no
# time padding and everything after it is causal with its state carried from window to window
# (LSTM h/c; ConvRNN-T's local-CNN cache and global-CNN running state, streamed exactly for any
# chunking), so windows of chunk_frames + 3 fbank frames give the frames of one full pass for any
# chunk_frames. Training runs that full pass; for these models the chunk is an export choice,
# algorithmic latency (chunk + lookahead) against encoder calls per second.
CHUNK_FREE_MODEL_TYPES = ("lstm_transducer", "convrnnt")


def check_chunk_frames(model_type: str, chunk_frames: int) -> None:
    """ValueError unless a bundle of `model_type` may stream in chunks of `chunk_frames` fbank frames."""
    if model_type not in CHUNK_FREE_MODEL_TYPES:
        raise ValueError(f"a {model_type} model keeps its checkpoint's chunk_frames: choosing it at export is "
                         f"supported only where the output is chunk-independent ({', '.join(CHUNK_FREE_MODEL_TYPES)})")
    if chunk_frames < 1 or chunk_frames % SUBSAMPLING:
        raise ValueError(f"chunk_frames must be a positive multiple of the model's subsampling {SUBSAMPLING}, "
                         f"got {chunk_frames}")


def load_model(checkpoint: Path, chunk_frames: int | None = None) -> nn.Module:
    """The eval-mode model from a weights-only checkpoint (or a training checkpoint).

    `chunk_frames`, when given, replaces the config's streaming chunk (see CHUNK_FREE_MODEL_TYPES);
    the weights are the same.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "model_config" in state:
        config = state["model_config"]
    elif "config" in state and "model" in state["config"]:
        config = state["config"]["model"]
    else:
        raise ValueError(f"{checkpoint}: no model_config in the checkpoint")
    model_type = state.get("model_type") or state.get("config", {}).get("model_type", "lstm_transducer")
    model_class, config_class = model_classes(model_type)
    if chunk_frames is not None:
        check_chunk_frames(model_type, chunk_frames)
        config = {**config, "chunk_frames": chunk_frames}
    model = model_class(config_class(**config))
    model.load_state_dict(state["model"])
    return model.eval()


@torch.no_grad()
def export_bundle(checkpoint: Path, out_dir: Path, tokens: Path | None = None,
                  model_card: dict | None = None, chunk_frames: int | None = None) -> Path:
    """Write the bundle for `checkpoint` into `out_dir` and return `out_dir`.

    `tokens` defaults to the tokens.txt beside the checkpoint (the training work dir).
    `model_card` is free-form provenance (data, training time, WERs) copied into bundle.json.
    `chunk_frames` overrides the checkpoint config's chunk (LSTM transducer and ConvRNN-T only:
    CHUNK_FREE_MODEL_TYPES); bundle.json and the encoder metadata record the chunk exported.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    tokens = Path(tokens) if tokens is not None else checkpoint.parent / "tokens.txt"
    model = load_model(checkpoint, chunk_frames)
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
    check_tokens(tokens, cfg.vocab_size)
    features = model_features(cfg.num_bins)
    out_dir.mkdir(parents=True, exist_ok=True)

    h = torch.zeros(cfg.num_layers, 1, cfg.d_model)
    c = torch.zeros(cfg.num_layers, 1, cfg.rnn_hidden_size)
    x = torch.zeros(1, cfg.window_frames, cfg.num_bins)
    export_graph(ExportableEncoder(model.encoder).eval(), (x, h, c), out_dir / "encoder.onnx",
                 ["x", "h", "c"], ["encoder_out", "new_h", "new_c"],
                 {"x": {0: "N", 1: "T"}, "h": {1: "N"}, "c": {1: "N"},
                  "encoder_out": {0: "N", 1: "T_out"}, "new_h": {1: "N"}, "new_c": {1: "N"}})
    finish_graph(out_dir / "encoder.onnx",
                 {"model_type": "lstm", "num_encoder_layers": cfg.num_layers, "T": cfg.window_frames,
                  "decode_chunk_len": cfg.chunk_frames, "d_model": cfg.d_model,
                  "rnn_hidden_size": cfg.rnn_hidden_size},
                 {"encoder_out": ["N", "T_out", cfg.joiner_dim],
                  "new_h": [cfg.num_layers, "N", cfg.d_model],
                  "new_c": [cfg.num_layers, "N", cfg.rnn_hidden_size]})
    export_prediction_graphs(model, out_dir)
    copy_tokens(tokens, out_dir)

    manifest = base_manifest(MODEL_TYPE, cfg, features, encoder={
        "num_layers": cfg.num_layers,
        "d_model": cfg.d_model,
        "rnn_hidden_size": cfg.rnn_hidden_size,
        "joiner_dim": cfg.joiner_dim,
    })
    manifest["states"] = lstm_states(cfg.num_layers, cfg.d_model, cfg.rnn_hidden_size)
    manifest["compute"] = {"parameters": parameter_count(model),
                           "macs_per_second": encoder_macs_per_second(model, cfg.num_bins)}
    write_manifest(out_dir, manifest, (*ONNX_FILES, "tokens.txt"), model_card)
    return out_dir
