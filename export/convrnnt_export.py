"""Export a ConvRNN-T to a bundle: ONNX for the dense parts, named weights for the C++ global CNN.

The streaming encoder is split where the C++ kernel carries state:
  frontend.onnx      x (N, window_frames, bins), local_cache (L, N, k-1, C_l)
                     -> local (N, T', F + C_l: subsampled frames, local CNN), global_in (N, T', C_g),
                        new_local_cache
  [C++ GlobalCnn]    global_in -> global_out, its own state (framegate.kernels.GlobalCnn)
  encoder_rest.onnx  local, global_out, h, c -> encoder_out (N, T', joiner_dim), new_h, new_c
  global_cnn.onnx    no inputs; the global CNN's weights as initializers named
                     `global_cnn.block{b}.{key}`, each also a graph output, so the engine reads
                     them through ONNX Runtime (no protobuf parser on the device) by the names
                     and shapes bundle.json lists.
decoder.onnx, joiner.onnx and tokens.txt are the baseline's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from framegate.export.bundle_writer import (base_manifest, check_tokens, copy_tokens, export_graph,
                                            export_prediction_graphs, finish_graph, lstm_states, model_features,
                                            write_manifest, write_weights_graph)
from framegate.export.compute_cost import encoder_macs_per_second, parameter_count
from framegate.export.exportable_lstm import exportable_lstm
from framegate.export.models.convrnnt import ConvRnnt, ConvRnntEncoder, GlobalCnn
from framegate.export.models.lstm_transducer import SUBSAMPLING
from framegate.kernels.global_cnn_state import TENSOR_KEYS, GlobalCnnConfig, tensor_name, tensor_shapes

MODEL_TYPE = "convrnnt"
ONNX_FILES = ("frontend.onnx", "global_cnn.onnx", "encoder_rest.onnx", "decoder.onnx", "joiner.onnx")


class FrontendGraph(nn.Module):
    def __init__(self, encoder: ConvRnntEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, local_cache: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encoder.frontend(x, local_cache)


class EncoderRestGraph(nn.Module):
    """Merge + LSTM stack (exportable_lstm: ONNX's LSTM op, or the projected cell spelled out) + output layer."""

    def __init__(self, encoder: ConvRnntEncoder) -> None:
        super().__init__()
        self.encoder = encoder  # for merge_branches; the graph keeps only the weights it uses
        self.out = encoder.out
        self.lstm = exportable_lstm(encoder.lstm)

    def forward(self, local: torch.Tensor, global_out: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.encoder.merge_branches(local, global_out)
        x, new_h, new_c = self.lstm(x, h, c)
        return self.out(x), new_h, new_c


def global_cnn_config(model: ConvRnnt) -> GlobalCnnConfig:
    cfg = model.cfg
    return GlobalCnnConfig(channels=cfg.global_channels, hidden=cfg.global_hidden, se_hidden=cfg.se_hidden,
                           num_blocks=cfg.global_blocks, squeeze=cfg.squeeze, ema_decay=cfg.ema_decay)


def global_cnn_tensors(global_cnn: GlobalCnn) -> dict[str, np.ndarray]:
    """The global CNN's weights by stable name, in the kernel's row-major layouts."""
    tensors = {}
    for b, block in enumerate(global_cnn.blocks):
        source = {"norm_weight": block.norm.weight, "norm_bias": block.norm.bias,
                  "pw1_weight": block.pw1.weight, "pw1_bias": block.pw1.bias,
                  "dw_weight": block.dw.weight.reshape(block.dw.weight.shape[0], 3), "dw_bias": block.dw.bias,
                  "pw2_weight": block.pw2.weight, "pw2_bias": block.pw2.bias,
                  "se1_weight": block.se1.weight, "se1_bias": block.se1.bias,
                  "se2_weight": block.se2.weight, "se2_bias": block.se2.bias}
        for key in TENSOR_KEYS:
            tensors[tensor_name(b, key)] = np.ascontiguousarray(source[key].detach().numpy(), dtype=np.float32)
    return tensors


@torch.no_grad()
def export_convrnnt_bundle(model: ConvRnnt, out_dir: Path, tokens: Path, model_card: dict | None = None) -> Path:
    """Write the bundle of an eval-mode ConvRnnt into `out_dir` and return `out_dir`."""
    cfg = model.cfg
    check_tokens(tokens, cfg.vocab_size)
    features = model_features(cfg.num_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    enc = model.encoder
    local_cache_shape = [cfg.local_layers, 1, cfg.local_kernel - 1, cfg.local_channels]

    x = torch.zeros(1, cfg.window_frames, cfg.num_bins)
    cache = torch.zeros(*local_cache_shape)
    export_graph(FrontendGraph(enc).eval(), (x, cache), out_dir / "frontend.onnx", ["x", "local_cache"],
                 ["local", "global_in", "new_local_cache"],
                 {"x": {0: "N", 1: "T"}, "local_cache": {1: "N"}, "local": {0: "N", 1: "T_out"},
                  "global_in": {0: "N", 1: "T_out"}, "new_local_cache": {1: "N"}})
    finish_graph(out_dir / "frontend.onnx", {"model_type": MODEL_TYPE},
                 {"local": ["N", "T_out", cfg.local_width], "global_in": ["N", "T_out", cfg.global_channels],
                  "new_local_cache": [cfg.local_layers, "N", cfg.local_kernel - 1, cfg.local_channels]})

    t_out = cfg.chunk_frames // SUBSAMPLING
    h = torch.zeros(cfg.num_layers, 1, cfg.d_model)
    c = torch.zeros(cfg.num_layers, 1, cfg.rnn_hidden_size)
    export_graph(EncoderRestGraph(enc).eval(),
                 (torch.zeros(1, t_out, cfg.local_width), torch.zeros(1, t_out, cfg.global_channels), h, c),
                 out_dir / "encoder_rest.onnx", ["local", "global_out", "h", "c"], ["encoder_out", "new_h", "new_c"],
                 {"local": {0: "N", 1: "T"}, "global_out": {0: "N", 1: "T"}, "h": {1: "N"}, "c": {1: "N"},
                  "encoder_out": {0: "N", 1: "T"}, "new_h": {1: "N"}, "new_c": {1: "N"}})
    finish_graph(out_dir / "encoder_rest.onnx", {"model_type": MODEL_TYPE},
                 {"encoder_out": ["N", "T", cfg.joiner_dim], "new_h": [cfg.num_layers, "N", cfg.d_model],
                  "new_c": [cfg.num_layers, "N", cfg.rnn_hidden_size]})

    gcfg = global_cnn_config(model)
    tensors = global_cnn_tensors(enc.global_cnn)
    write_weights_graph(tensors, out_dir / "global_cnn.onnx")

    export_prediction_graphs(model, out_dir)
    copy_tokens(tokens, out_dir)

    shapes = tensor_shapes(gcfg)
    manifest = base_manifest(MODEL_TYPE, cfg, features, encoder={
        "num_layers": cfg.num_layers,
        "d_model": cfg.d_model,
        "rnn_hidden_size": cfg.rnn_hidden_size,
        "joiner_dim": cfg.joiner_dim,
        "local_channels": cfg.local_channels,
        "local_width": cfg.local_width,
        "local_layers": cfg.local_layers,
        "local_cache_frames": cfg.local_kernel - 1,
        "global_channels": cfg.global_channels,
    }, sections={"global_cnn": {
        "file": "global_cnn.onnx",
        "channels": gcfg.channels,
        "hidden": gcfg.hidden,
        "se_hidden": gcfg.se_hidden,
        "num_blocks": gcfg.num_blocks,
        "squeeze": gcfg.squeeze,
        "ema_decay": gcfg.ema_decay,
        "tensors": [{"name": tensor_name(b, key), "shape": list(shapes[key]), "dtype": "float32",
                     "layout": "row-major"}
                    for b in range(gcfg.num_blocks) for key in TENSOR_KEYS],
    }})
    manifest["states"] = [{"name": "local_cache", "shape": local_cache_shape},
                          *lstm_states(cfg.num_layers, cfg.d_model, cfg.rnn_hidden_size)]
    manifest["compute"] = {"parameters": parameter_count(model),
                           "macs_per_second": encoder_macs_per_second(model, cfg.num_bins)}
    write_manifest(out_dir, manifest, (*ONNX_FILES, "tokens.txt"), model_card)
    return out_dir
