"""Baseline streaming LSTM transducer (the shape sherpa-onnx's online LSTM contract runs).

Encoder: per-bin feature normalization -> conv subsampling x4 without time padding
-> linear + LayerNorm -> LSTM stack (projected when rnn_hidden_size > d_model) -> linear
to the joiner dimension.
Because the convolutions use no padding in time, running them on overlapping windows of
`window_frames = chunk_frames + 3` fbank frames, advanced by `chunk_frames`, gives
exactly the frames that one pass over the whole utterance gives: the 3 extra frames
are the lookahead. The LSTM carries (h, c) from window to window.

Decoder: stateless, an embedding over the last `context_size` tokens (-1 = nothing yet,
masked to zero); the start context is [-1, ..., -1, blank].
Joiner: Linear(tanh(enc + dec)).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SUBSAMPLING = 4
LOOKAHEAD_FRAMES = 3  # the conv stack's receptive field is 7 frames at stride 4


@dataclass(frozen=True)
class LstmTransducerConfig:
    num_bins: int = 80
    vocab_size: int = 256
    conv_channels: int = 64
    d_model: int = 320
    rnn_hidden_size: int = 640
    num_layers: int = 3
    joiner_dim: int = 320
    decoder_dim: int = 320
    context_size: int = 2
    dropout: float = 0.1
    chunk_frames: int = 8

    def validate(self) -> None:
        for name in ("num_bins", "vocab_size", "conv_channels", "d_model", "rnn_hidden_size",
                     "num_layers", "joiner_dim", "decoder_dim", "context_size", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"LstmTransducerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_frames % SUBSAMPLING:
            raise ValueError(f"LstmTransducerConfig.chunk_frames must be a multiple of {SUBSAMPLING}")
        if self.rnn_hidden_size < self.d_model:
            raise ValueError("LstmTransducerConfig.rnn_hidden_size must be >= d_model (projected LSTM)")

    @property
    def window_frames(self) -> int:
        return self.chunk_frames + LOOKAHEAD_FRAMES

    def to_dict(self) -> dict:
        return asdict(self)


def subsampled_length(frames: torch.Tensor | int) -> torch.Tensor | int:
    """Encoder frames produced from `frames` fbank frames (two 3-tap stride-2 convs)."""
    return ((frames - 3) // 2 + 1 - 3) // 2 + 1


class ConvSubsampling(nn.Module):
    """(N, T, bins) -> (N, T', d_model) with T' = subsampled_length(T); no time padding."""

    def __init__(self, num_bins: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2)
        freq = ((num_bins - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(channels * freq, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x.unsqueeze(1)))
        x = F.relu(self.conv2(x))
        n, c, t, f = x.shape
        x = self.out(x.permute(0, 2, 1, 3).reshape(n, t, c * f))
        return self.norm(x)


class LstmEncoder(nn.Module):
    def __init__(self, cfg: LstmTransducerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feature_mean", torch.zeros(cfg.num_bins))
        self.register_buffer("feature_inv_std", torch.ones(cfg.num_bins))
        self.subsampling = ConvSubsampling(cfg.num_bins, cfg.conv_channels, cfg.d_model)
        # A projection only where the cell is wider than d_model (sherpa-onnx's contract): torch's
        # CPU LSTM with projections has no oneDNN kernel and trains several times slower.
        proj = cfg.d_model if cfg.rnn_hidden_size != cfg.d_model else 0
        self.lstm = nn.LSTM(cfg.d_model, cfg.rnn_hidden_size, cfg.num_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, proj_size=proj)
        self.out = nn.Linear(cfg.d_model, cfg.joiner_dim)
        for layer in range(cfg.num_layers):  # forget-gate bias 1: leaves the blank plateau sooner
            for kind in ("ih", "hh"):
                bias = getattr(self.lstm, f"bias_{kind}_l{layer}")
                with torch.no_grad():
                    bias[cfg.rnn_hidden_size:2 * cfg.rnn_hidden_size].fill_(0.5)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        return (torch.zeros(c.num_layers, batch, c.d_model), torch.zeros(c.num_layers, batch, c.rnn_hidden_size))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (N, T, bins) fbank -> (N, T', joiner_dim), new (h, c)."""
        x = (x - self.feature_mean) * self.feature_inv_std
        x = self.subsampling(x)
        if state is None:
            state = self.initial_state(x.shape[0])
        x, (h, c) = self.lstm(x, state)
        return self.out(x), (h, c)


class StatelessDecoder(nn.Module):
    """Prediction network over the last `context_size` tokens; -1 means 'no token yet'."""

    def __init__(self, cfg: LstmTransducerConfig) -> None:
        super().__init__()
        self.context_size = cfg.context_size
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.decoder_dim)
        self.conv = nn.Conv1d(cfg.decoder_dim, cfg.decoder_dim, cfg.context_size,
                              groups=max(1, cfg.decoder_dim // 4), bias=False)
        self.out = nn.Linear(cfg.decoder_dim, cfg.joiner_dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y (N, U, context_size) int64 token contexts -> (N, U, joiner_dim)."""
        mask = (y >= 0).unsqueeze(-1).to(torch.float32)
        emb = self.embedding(y.clamp(min=0)) * mask  # (N, U, K, D)
        n, u, k, d = emb.shape
        x = self.conv(emb.reshape(n * u, k, d).transpose(1, 2)).reshape(n, u, d)
        return self.out(F.relu(x))


class Joiner(nn.Module):
    def __init__(self, cfg: LstmTransducerConfig) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.joiner_dim, cfg.vocab_size)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(enc + dec))


def decoder_contexts(targets: torch.Tensor, target_lengths: torch.Tensor, context_size: int,
                     blank: int = 0) -> torch.Tensor:
    """(N, U) padded targets -> (N, U+1, context_size) contexts, the first being [-1.., blank]."""
    n, u = targets.shape
    seq = torch.full((n, u + context_size), -1, dtype=torch.long)
    seq[:, context_size - 1] = blank
    seq[:, context_size:] = targets
    pad = torch.arange(u).unsqueeze(0) >= target_lengths.unsqueeze(1)
    seq[:, context_size:][pad] = blank
    return seq.unfold(1, context_size, 1)


class LstmTransducer(nn.Module):
    def __init__(self, cfg: LstmTransducerConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = LstmEncoder(cfg)
        self.decoder = StatelessDecoder(cfg)
        self.joiner = Joiner(cfg)
        self.ctc_head = nn.Linear(cfg.joiner_dim, cfg.vocab_size)  # training aid only, not exported
