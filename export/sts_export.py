"""Export a separator-transducer-segmenter checkpoint to a bundle (model_type "sts", two channels).

    encoder.onnx  x (1, window_frames, bins), mix_h (Lm, 1, d), mix_c (Lm, 1, H),
                  rec_h (Lr, 2, d), rec_c (Lr, 2, H)
                  -> encoder_out (2, T', joiner_dim): one row per channel, and the new states
    decoder.onnx, joiner.onnx: the baseline's graphs (tied across channels), vocabulary with
                  <sot>, <eot> as its last two pieces.

The per-channel speech-activity head is a training aid and is not exported: segments come
from the `<sot>`/`<eot>` tokens the engine decodes. bundle.json's "sts" section names the
channel count and the two turn pieces.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from framegate.export.bundle_writer import (base_manifest, check_tokens, copy_tokens, export_graph,
                                            export_prediction_graphs, finish_graph, model_features,
                                            write_manifest)
from framegate.export.compute_cost import parameter_count
from framegate.export.exportable_lstm import exportable_lstm
from framegate.export.models.sts import CHANNELS, EOT_PIECE, SOT_PIECE, SeparatorTransducerSegmenter, StsEncoder

MODEL_TYPE = "sts"
ONNX_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx")


class ExportableStsEncoder(nn.Module):
    """`StsEncoder` as the streaming graph, its LSTMs in exportable form (eval mode)."""

    def __init__(self, encoder: StsEncoder) -> None:
        super().__init__()
        self.register_buffer("feature_mean", encoder.feature_mean.detach().clone())
        self.register_buffer("feature_inv_std", encoder.feature_inv_std.detach().clone())
        self.subsampling = encoder.subsampling
        self.mix_lstm = exportable_lstm(encoder.mix_lstm)
        self.separator = encoder.separator
        self.rec_lstm = exportable_lstm(encoder.rec_lstm)
        self.out = encoder.out

    def forward(self, x: torch.Tensor, mix_h: torch.Tensor, mix_c: torch.Tensor, rec_h: torch.Tensor,
                rec_c: torch.Tensor):
        x = self.subsampling((x - self.feature_mean) * self.feature_inv_std)
        x, new_mix_h, new_mix_c = self.mix_lstm(x, mix_h, mix_c)
        n, t, d = x.shape
        channels = self.separator(x).reshape(n * CHANNELS, t, d)
        y, new_rec_h, new_rec_c = self.rec_lstm(channels, rec_h, rec_c)
        return self.out(y), new_mix_h, new_mix_c, new_rec_h, new_rec_c


def _check_turn_tokens(tokens: Path, vocab_size: int) -> None:
    pieces = [ln.rsplit(" ", 1)[0] for ln in tokens.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if pieces[vocab_size - 2:vocab_size] != [SOT_PIECE, EOT_PIECE]:
        raise ValueError(f"{tokens}: the last two pieces must be {SOT_PIECE} and {EOT_PIECE} "
                         f"(framegate.export.turn_tokens.extend_tokens_txt adds them)")


@torch.no_grad()
def export_sts_bundle(model: SeparatorTransducerSegmenter, out_dir: Path, tokens: Path,
                      model_card: dict | None = None) -> Path:
    cfg = model.cfg
    check_tokens(tokens, cfg.vocab_size)
    _check_turn_tokens(tokens, cfg.vocab_size)
    features = model_features(cfg.num_bins)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm, lr, d, h = cfg.mix_layers, cfg.rec_layers, cfg.d_model, cfg.rnn_hidden_size
    args = (torch.zeros(1, cfg.window_frames, cfg.num_bins), torch.zeros(lm, 1, d), torch.zeros(lm, 1, h),
            torch.zeros(lr, CHANNELS, d), torch.zeros(lr, CHANNELS, h))
    export_graph(ExportableStsEncoder(model.encoder).eval(), args, out_dir / "encoder.onnx",
                 ["x", "mix_h", "mix_c", "rec_h", "rec_c"],
                 ["encoder_out", "new_mix_h", "new_mix_c", "new_rec_h", "new_rec_c"],
                 {"x": {0: "N", 1: "T"}, "encoder_out": {0: "NC", 1: "T_out"}})
    finish_graph(out_dir / "encoder.onnx", {"model_type": MODEL_TYPE, "channels": CHANNELS},
                 {"encoder_out": ["NC", "T_out", cfg.joiner_dim], "new_mix_h": [lm, 1, d], "new_mix_c": [lm, 1, h],
                  "new_rec_h": [lr, CHANNELS, d], "new_rec_c": [lr, CHANNELS, h]})
    export_prediction_graphs(model, out_dir)
    copy_tokens(tokens, out_dir)
    manifest = base_manifest(MODEL_TYPE, cfg, features, encoder={
        "num_layers": cfg.num_layers, "d_model": d, "rnn_hidden_size": h, "joiner_dim": cfg.joiner_dim,
        "mix_layers": lm, "rec_layers": lr})
    manifest["states"] = sts_states(lm, lr, d, h)
    manifest["sts"] = {"channels": CHANNELS, "sot_piece": SOT_PIECE, "eot_piece": EOT_PIECE}
    manifest["compute"] = {"parameters": parameter_count(model)}
    write_manifest(out_dir, manifest, (*ONNX_FILES, "tokens.txt"), model_card)
    return out_dir


def sts_states(mix_layers: int, rec_layers: int, d_model: int, rnn_hidden_size: int) -> list[dict]:
    """bundle.json "states" of an STS encoder (the engine checks the same list)."""
    return [{"name": "mix_h", "shape": [mix_layers, 1, d_model]},
            {"name": "mix_c", "shape": [mix_layers, 1, rnn_hidden_size]},
            {"name": "rec_h", "shape": [rec_layers, CHANNELS, d_model]},
            {"name": "rec_c", "shape": [rec_layers, CHANNELS, rnn_hidden_size]}]
