"""Export a gated Transformer-transducer to a bundle: ONNX front end, named weights for C++.

The streaming encoder is split where the C++ kernel takes over:
  frontend.onnx        x (N, window_frames, bins) -> frames (N, T', d_model): normalization and
                       conv subsampling, ungated and stateless (the window carries the lookahead)
  [C++ GatedEncoder]   frames -> arbitrators -> gated blocks (ring key/value caches in C++)
                       -> LayerNorm -> Linear: encoder_out (T', joiner_dim)
  gated_weights.onnx   no inputs; every weight the C++ side reads as an initializer named
                       `gated.{key}` (kernels/gated_encoder.py: tensor_shapes), each also a graph
                       output, so the engine reads them through ONNX Runtime by the names and
                       shapes bundle.json lists (no protobuf parser on the device)
  encoder_dense.onnx   the whole encoder with every gate on, streaming, its key/value caches as
                       explicit state: x, k_cache, v_cache (L, N, left_context, d_model),
                       cache_mask (N, left_context) -> encoder_out, new_k, new_v, new_mask.
                       ONNX Runtime's dense reference for the savings benchmark.
decoder.onnx, joiner.onnx and tokens.txt are the baseline's. bundle.json's "gating" section
records the skip rule, the per-part MACs per encoder frame, the MAC denominator (all encoder
MACs with every part on: front end, arbitrators, blocks, output projection) and the tensors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from framegate.export.bundle_writer import (base_manifest, check_tokens, copy_tokens, export_graph,
                                            export_prediction_graphs, finish_graph, model_features,
                                            write_manifest, write_weights_graph)
from framegate.export.compute_cost import parameter_count
from framegate.export.models.gated_transformer import (SKIP_RULE, GatedTransformer, GatedTransformerEncoder,
                                                       part_macs)
from framegate.export.models.lstm_transducer import SUBSAMPLING
from framegate.kernels.gated_encoder import GatedEncoderConfig, tensor_name, tensor_shapes

MODEL_TYPE = "gated_transformer"
ONNX_FILES = ("frontend.onnx", "gated_weights.onnx", "encoder_dense.onnx", "decoder.onnx", "joiner.onnx")
MAX_ROWS = 16  # C++ tile: frames per GEMM batch; also sets the ring capacity (left_context + MAX_ROWS)
DEFAULT_THRESHOLD = 0.5


class FrontendGraph(nn.Module):
    def __init__(self, encoder: GatedTransformerEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.frontend(x)


class DenseStreamingGraph(nn.Module):
    """One window with every part on; keys/values of the last left_context frames as state."""

    def __init__(self, encoder: GatedTransformerEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.left_context = encoder.cfg.left_context
        self.num_heads = encoder.cfg.num_heads

    def forward(self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.encoder.frontend(x)
        n, c, d = h.shape
        w, heads = self.left_context, self.num_heads
        dh = d // heads
        valid = torch.cat([cache_mask, torch.ones(n, c, dtype=cache_mask.dtype)], dim=1) > 0.5  # (N, W+C)
        query = torch.arange(c).unsqueeze(1)
        key = torch.arange(w + c).unsqueeze(0)  # key j is at time t0 - W + j, query i at t0 + i
        allowed = (key >= query) & (key <= query + w)
        mask = allowed.unsqueeze(0).unsqueeze(0) & valid[:, None, None, :]
        new_k, new_v = [], []
        for layer, block in enumerate(self.encoder.blocks):
            q, k, v = block.qkv(block.norm_att(h)).chunk(3, dim=-1)
            keys = torch.cat([k_cache[layer], k], dim=1)
            values = torch.cat([v_cache[layer], v], dim=1)
            qh = q.view(n, c, heads, dh).transpose(1, 2)
            kh = keys.view(n, w + c, heads, dh).transpose(1, 2)
            vh = values.view(n, w + c, heads, dh).transpose(1, 2)
            scores = (qh @ kh.transpose(-1, -2)) / (dh ** 0.5)
            att = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            h = h + block.att_out((att @ vh).transpose(1, 2).reshape(n, c, d))
            h = h + block.feed_forward(h)
            new_k.append(keys[:, c:])
            new_v.append(values[:, c:])
        out = self.encoder.out(self.encoder.norm_out(h))
        return out, torch.stack(new_k), torch.stack(new_v), valid[:, c:].to(cache_mask.dtype)


def kernel_config(model: GatedTransformer) -> GatedEncoderConfig:
    cfg = model.cfg
    return GatedEncoderConfig(d_model=cfg.d_model, num_heads=cfg.num_heads, ff_dim=cfg.ff_dim,
                              num_layers=cfg.num_layers, left_context=cfg.left_context, joiner_dim=cfg.joiner_dim,
                              max_rows=MAX_ROWS, arbitrator=cfg.arbitrator,
                              arbitrator_kernel=cfg.arbitrator_kernel if cfg.arbitrator == "feature" else 1,
                              arbitrator_hidden=cfg.arbitrator_hidden if cfg.arbitrator != "none" else 1)


def gated_tensors(encoder: GatedTransformerEncoder) -> dict[str, np.ndarray]:
    """Every weight the C++ GatedEncoder reads, by key, in its row-major layouts."""
    source: dict[str, torch.Tensor] = {}
    for layer, b in enumerate(encoder.blocks):
        parts = {"norm_att": b.norm_att, "qkv": b.qkv, "att_out": b.att_out, "norm_ff": b.norm_ff,
                 "ff1": b.ff1, "ff2": b.ff2}
        for prefix, module in parts.items():
            source[f"block{layer}.{prefix}_weight"] = module.weight
            source[f"block{layer}.{prefix}_bias"] = module.bias
        if encoder.block_arbitrators is not None:
            arb = encoder.block_arbitrators[layer]
            for prefix, module in (("hidden", arb.hidden), ("out", arb.out)):
                source[f"block{layer}.arbitrator.{prefix}_weight"] = module.weight
                source[f"block{layer}.arbitrator.{prefix}_bias"] = module.bias
    if encoder.feature_arbitrator is not None:
        arb = encoder.feature_arbitrator
        source["feature_arbitrator.conv_weight"] = arb.conv.weight.permute(0, 2, 1)  # (hidden, kernel, d): tap-major
        source["feature_arbitrator.conv_bias"] = arb.conv.bias
        source["feature_arbitrator.out_weight"] = arb.out.weight
        source["feature_arbitrator.out_bias"] = arb.out.bias
    source.update({"norm_out_weight": encoder.norm_out.weight, "norm_out_bias": encoder.norm_out.bias,
                   "out_weight": encoder.out.weight, "out_bias": encoder.out.bias})
    return {key: np.ascontiguousarray(t.detach().numpy(), dtype=np.float32) for key, t in source.items()}


@torch.no_grad()
def export_gated_bundle(model: GatedTransformer, out_dir: Path, tokens: Path, model_card: dict | None = None) -> Path:
    """Write the bundle of an eval-mode GatedTransformer into `out_dir` and return `out_dir`."""
    cfg = model.cfg
    model.eval()
    check_tokens(tokens, cfg.vocab_size)
    features = model_features(cfg.num_bins)
    out_dir.mkdir(parents=True, exist_ok=True)
    enc = model.encoder
    d, layers, w = cfg.d_model, cfg.num_layers, cfg.left_context

    x = torch.zeros(1, cfg.window_frames, cfg.num_bins)
    export_graph(FrontendGraph(enc).eval(), (x,), out_dir / "frontend.onnx", ["x"], ["frames"],
                 {"x": {0: "N", 1: "T"}, "frames": {0: "N", 1: "T_out"}})
    finish_graph(out_dir / "frontend.onnx", {"model_type": MODEL_TYPE}, {"frames": ["N", "T_out", d]})

    cache = torch.zeros(layers, 1, w, d)
    export_graph(DenseStreamingGraph(enc).eval(), (x, cache, cache, torch.zeros(1, w)), out_dir / "encoder_dense.onnx",
                 ["x", "k_cache", "v_cache", "cache_mask"], ["encoder_out", "new_k", "new_v", "new_mask"],
                 {"x": {0: "N"}, "k_cache": {1: "N"}, "v_cache": {1: "N"}, "cache_mask": {0: "N"},
                  "encoder_out": {0: "N"}, "new_k": {1: "N"}, "new_v": {1: "N"}, "new_mask": {0: "N"}})
    t_out = cfg.chunk_frames // SUBSAMPLING
    finish_graph(out_dir / "encoder_dense.onnx", {"model_type": MODEL_TYPE},
                 {"encoder_out": ["N", t_out, cfg.joiner_dim], "new_k": [layers, "N", w, d],
                  "new_v": [layers, "N", w, d], "new_mask": ["N", w]})

    kcfg = kernel_config(model)
    tensors = gated_tensors(enc)
    shapes = tensor_shapes(kcfg)
    if {k: v.shape for k, v in tensors.items()} != shapes:
        raise ValueError("gated export: tensors disagree with kernels.gated_encoder.tensor_shapes")
    write_weights_graph({tensor_name(k): tensors[k] for k in shapes}, out_dir / "gated_weights.onnx")

    export_prediction_graphs(model, out_dir)
    copy_tokens(tokens, out_dir)

    macs = part_macs(cfg)
    frames_per_second = 1000.0 / (features.frame_shift_ms * SUBSAMPLING)  # encoder frames per second
    manifest = base_manifest(MODEL_TYPE, cfg, features, encoder={
        "num_layers": layers,
        "d_model": d,
        "rnn_hidden_size": 0,  # no recurrent state: the blocks' state is the C++ key/value rings
        "joiner_dim": cfg.joiner_dim,
        "num_heads": cfg.num_heads,
        "ff_dim": cfg.ff_dim,
        "left_context": w,
        "max_rows": MAX_ROWS,
    }, sections={"gating": {
        "rule": SKIP_RULE,
        "arbitrator": cfg.arbitrator,
        "arbitrator_kernel": kcfg.arbitrator_kernel,
        "arbitrator_hidden": kcfg.arbitrator_hidden,
        "gate_order": "per encoder frame: [layer0 attention, layer0 feed-forward, layer1 attention, ...]",
        "decision": "on when sigmoid(logit) > threshold",
        "default_threshold": DEFAULT_THRESHOLD,
        "compute_lambda": cfg.compute_lambda,
        "nonspeech_compute_lambda": cfg.nonspeech_compute_lambda,
        "wake_cost_frames": cfg.wake_cost_frames,
        "part_macs_per_frame": {k: v for k, v in macs.items() if k != "dense_per_frame"},
        "mac_denominator_per_frame": macs["dense_per_frame"],
        "mac_denominator_per_second": macs["dense_per_frame"] * frames_per_second,
        "file": "gated_weights.onnx",
        "tensors": [{"name": tensor_name(k), "shape": list(s), "dtype": "float32", "layout": "row-major"}
                    for k, s in shapes.items()],
        "ort_dense_file": "encoder_dense.onnx",
    }})
    manifest["states"] = gated_states(layers, w, MAX_ROWS, d,
                                      kcfg.arbitrator_kernel if cfg.arbitrator == "feature" else 1)
    manifest["compute"] = {"parameters": parameter_count(model),
                           "macs_per_second": macs["dense_per_frame"] * frames_per_second}
    write_manifest(out_dir, manifest, (*ONNX_FILES, "tokens.txt"), model_card)
    return out_dir


def gated_states(layers: int, left_context: int, max_rows: int, d_model: int, arbitrator_kernel: int) -> list[dict]:
    """The per-stream state the C++ side holds (engine/bundle.py checks bundle.json against it)."""
    return [{"name": "key_value_ring", "shape": [layers, 2, left_context + max_rows, d_model]},
            {"name": "arbitrator_history", "shape": [arbitrator_kernel - 1, d_model]}]
