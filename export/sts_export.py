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

import json
import shutil
from pathlib import Path

import torch
import torch.nn as nn

from framegate.engine.features import SAMPLE_RATE, FbankConfig
from framegate.export.compute_cost import parameter_count
from framegate.export.exportable_lstm import ProjectedLstm
from framegate.export.models.lstm_transducer import SUBSAMPLING
from framegate.export.models.sts import CHANNELS, EOT_PIECE, SOT_PIECE, SeparatorTransducerSegmenter, StsEncoder
from framegate.export.onnx_export import (FORMAT_VERSION, _check_tokens, _DecoderGraph, _export, _file_record,
                                          _finish_graph, silence_log_mel)
from framegate.export.tokenizer import BLANK_ID

MODEL_TYPE = "sts"
ONNX_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx")


class ExportableStsEncoder(nn.Module):
    """`StsEncoder` as the streaming graph, its LSTMs spelled out as ProjectedLstm (eval mode)."""

    def __init__(self, encoder: StsEncoder) -> None:
        super().__init__()
        self.register_buffer("feature_mean", encoder.feature_mean.detach().clone())
        self.register_buffer("feature_inv_std", encoder.feature_inv_std.detach().clone())
        self.subsampling = encoder.subsampling
        self.mix_lstm = ProjectedLstm(encoder.mix_lstm)
        self.separator = encoder.separator
        self.rec_lstm = ProjectedLstm(encoder.rec_lstm)
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
    _check_tokens(tokens, cfg.vocab_size)
    _check_turn_tokens(tokens, cfg.vocab_size)
    features = FbankConfig()
    if cfg.num_bins != features.num_bins:
        raise ValueError(f"model expects {cfg.num_bins} bins, features give {features.num_bins}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm, lr, d, h = cfg.mix_layers, cfg.rec_layers, cfg.d_model, cfg.rnn_hidden_size
    args = (torch.zeros(1, cfg.window_frames, cfg.num_bins), torch.zeros(lm, 1, d), torch.zeros(lm, 1, h),
            torch.zeros(lr, CHANNELS, d), torch.zeros(lr, CHANNELS, h))
    _export(ExportableStsEncoder(model.encoder).eval(), args, out_dir / "encoder.onnx",
            ["x", "mix_h", "mix_c", "rec_h", "rec_c"],
            ["encoder_out", "new_mix_h", "new_mix_c", "new_rec_h", "new_rec_c"],
            {"x": {0: "N", 1: "T"}, "encoder_out": {0: "NC", 1: "T_out"}})
    _finish_graph(out_dir / "encoder.onnx", {"model_type": MODEL_TYPE, "channels": CHANNELS},
                  {"encoder_out": ["NC", "T_out", cfg.joiner_dim], "new_mix_h": [lm, 1, d], "new_mix_c": [lm, 1, h],
                   "new_rec_h": [lr, CHANNELS, d], "new_rec_c": [lr, CHANNELS, h]})
    y = torch.full((1, cfg.context_size), -1, dtype=torch.int64)
    _export(_DecoderGraph(model).eval(), (y,), out_dir / "decoder.onnx", ["y"], ["decoder_out"],
            {"y": {0: "N"}, "decoder_out": {0: "N"}})
    _finish_graph(out_dir / "decoder.onnx", {"vocab_size": cfg.vocab_size, "context_size": cfg.context_size},
                  {"decoder_out": ["N", cfg.joiner_dim]})
    enc_out = torch.zeros(1, cfg.joiner_dim)
    _export(model.joiner.eval(), (enc_out, enc_out), out_dir / "joiner.onnx", ["encoder_out", "decoder_out"],
            ["logits"], {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logits": {0: "N"}})
    _finish_graph(out_dir / "joiner.onnx", {}, {"logits": ["N", cfg.vocab_size]})
    if Path(tokens).resolve() != (out_dir / "tokens.txt").resolve():
        shutil.copyfile(tokens, out_dir / "tokens.txt")
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_type": MODEL_TYPE,
        "sample_rate": SAMPLE_RATE,
        "features": features.to_dict(),
        "encoder": {"window_frames": cfg.window_frames, "chunk_frames": cfg.chunk_frames,
                    "lookahead_frames": cfg.window_frames - cfg.chunk_frames, "subsampling": SUBSAMPLING,
                    "pad_value": silence_log_mel(features), "num_layers": cfg.num_layers, "d_model": d,
                    "rnn_hidden_size": h, "joiner_dim": cfg.joiner_dim, "mix_layers": lm, "rec_layers": lr},
        "decoder": {"context_size": cfg.context_size, "vocab_size": cfg.vocab_size, "blank_id": BLANK_ID},
        "states": sts_states(lm, lr, d, h),
        "sts": {"channels": CHANNELS, "sot_piece": SOT_PIECE, "eot_piece": EOT_PIECE},
        "compute": {"parameters": parameter_count(model)},
        "files": {name: _file_record(out_dir / name) for name in (*ONNX_FILES, "tokens.txt")},
        "model_card": dict(model_card or {}),
    }
    (out_dir / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir


def sts_states(mix_layers: int, rec_layers: int, d_model: int, rnn_hidden_size: int) -> list[dict]:
    """bundle.json "states" of an STS encoder (the engine checks the same list)."""
    return [{"name": "mix_h", "shape": [mix_layers, 1, d_model]},
            {"name": "mix_c", "shape": [mix_layers, 1, rnn_hidden_size]},
            {"name": "rec_h", "shape": [rec_layers, CHANNELS, d_model]},
            {"name": "rec_c", "shape": [rec_layers, CHANNELS, rnn_hidden_size]}]
