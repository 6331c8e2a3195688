"""ConvRNN-T: the baseline LSTM transducer with a local and a global causal CNN before the LSTM.

Encoder, per utterance (N, T, bins) fbank:
  normalization -> conv subsampling x4 (the baseline's, no time padding, so the streaming
  window contract stays: windows of chunk_frames + 3 fbank frames every chunk_frames)
  -> two branches on the subsampled frames (cheap: 25 frames per second):
     local CNN:  Linear -> residual causal Conv1d (kernel `local_kernel`) + ReLU layers,
                 short-range context;
     global CNN: Linear -> `global_blocks` pre-norm residual blocks of
                 LayerNorm -> pointwise -> causal dilated depthwise (k=3, dilation 2^b)
                 -> pointwise -> causal squeeze-and-excitation, summarizing everything so far;
  -> LSTM input = LayerNorm(subsampled frames + Linear(concat(LayerNorm(local), LayerNorm(global))))
  -> LSTM stack (projected when rnn_hidden_size > d_model)
  -> Linear to the joiner.
The LayerNorms are per frame, so they stream without state. Without them a trained model's
global residual stream grew from RMS 5 to 2e5 over the six blocks by step 2,000 and the merge
saw the local branch at 1e-4 of the global one (the first comparison run learned nothing in
3,000 steps): ReLU blocks scale with their input, and the LayerNorm after the merge hid it.
The merge is residual on the subsampled frames (frontend_dim = d_model) and starts at zero, so at
initialization the LSTM reads what the baseline's does. Merging the branches alone (Linear +
LayerNorm over their concatenation), three runs stayed on the blank plateau past 2,500 steps
while the baseline left it by 2,000: the encoder's output did not depend on its input at all
(same loss for real and constant features), and the LSTM's input varied 0.2 % between two
different inputs against the baseline's 40 %: each Linear + LayerNorm stage had let a constant
component swamp the varying one.
Decoder and joiner are the baseline's.

The squeeze is causal: at frame t it is the mean of the block's features over frames 0..t of
the utterance (`squeeze="cumulative"`, the literal "whole utterance so far") or an exponential
moving average (`squeeze="ema"`, e_0 = w_0, e_t = a e_{t-1} + (1 - a) w_t). Streaming state of
the global CNN is then, per block, the last 2 * dilation depthwise inputs and the running sum
and count (or the EMA value): constant size, carried by the C++ kernel `global_cnn_state`.
The torch forward here is the full-utterance causal pass it must reproduce.

Weight layouts the C++ kernel reads (export records them in bundle.json):
  norm.weight and norm.bias (channels), pw1.weight (hidden, channels), dw.weight (hidden, 1, 3)
  with tap k applied to the input at t - (2 - k) * dilation, pw2.weight (channels, hidden),
  se1.weight (se_hidden, channels), se2.weight (channels, se_hidden); every bias 1-D. u = relu(pw1(norm(x))), ...,
  y = x + w * sigmoid(se2(relu(se1(s)))).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from framegate.export.models.lstm_transducer import (LOOKAHEAD_FRAMES, SUBSAMPLING, ConvSubsampling, Joiner,
                                                     StatelessDecoder)

SQUEEZE_MODES = ("cumulative", "ema")
DEPTHWISE_KERNEL = 3
LAYER_NORM_EPS = 1e-5  # the C++ kernel's too


@dataclass(frozen=True)
class ConvRnntConfig:
    num_bins: int = 80
    vocab_size: int = 256
    conv_channels: int = 64       # subsampling conv channels
    frontend_dim: int = 320       # subsampled feature width (= d_model: the merge is residual on it)
    local_channels: int = 128
    local_kernel: int = 5
    local_layers: int = 2
    global_channels: int = 160
    global_hidden: int = 320      # pointwise expansion inside a global block
    global_blocks: int = 6        # dilations 1, 2, 4, ..., receptive field 1 + 2 * (2^B - 1) frames
    se_hidden: int = 40
    squeeze: str = "cumulative"
    ema_decay: float = 0.99       # per subsampled frame (40 ms), only for squeeze="ema"
    d_model: int = 320
    rnn_hidden_size: int = 640
    num_layers: int = 2
    joiner_dim: int = 320
    decoder_dim: int = 320
    context_size: int = 2
    dropout: float = 0.1
    chunk_frames: int = 8

    def validate(self) -> None:
        for name in ("num_bins", "vocab_size", "conv_channels", "frontend_dim", "local_channels", "local_kernel",
                     "local_layers", "global_channels", "global_hidden", "global_blocks", "se_hidden", "d_model",
                     "rnn_hidden_size", "num_layers", "joiner_dim", "decoder_dim", "context_size", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConvRnntConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.local_kernel < 2:
            raise ValueError("ConvRnntConfig.local_kernel must be >= 2 (a causal conv with history)")
        if self.chunk_frames % SUBSAMPLING:
            raise ValueError(f"ConvRnntConfig.chunk_frames must be a multiple of {SUBSAMPLING}")
        if self.frontend_dim != self.d_model:
            raise ValueError(f"ConvRnntConfig.frontend_dim {self.frontend_dim} must equal d_model {self.d_model} "
                             "(the merge is residual on the subsampled frames)")
        if self.rnn_hidden_size < self.d_model:
            raise ValueError("ConvRnntConfig.rnn_hidden_size must be >= d_model (projected LSTM)")
        if self.squeeze not in SQUEEZE_MODES:
            raise ValueError(f"ConvRnntConfig.squeeze must be one of {SQUEEZE_MODES}, got {self.squeeze!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ConvRnntConfig.ema_decay must be in (0, 1), got {self.ema_decay}")

    @property
    def local_width(self) -> int:
        """Width of the front end's "local" output: the subsampled frames, then the local CNN's."""
        return self.frontend_dim + self.local_channels

    @property
    def window_frames(self) -> int:
        return self.chunk_frames + LOOKAHEAD_FRAMES

    def dilation(self, block: int) -> int:
        return 2 ** block

    def to_dict(self) -> dict:
        return asdict(self)


def causal_squeeze(w: torch.Tensor, mode: str, ema_decay: float) -> torch.Tensor:
    """(N, T, C) -> (N, T, C): at t the mean of w[:, :t+1] (cumulative) or its EMA.

    The cumulative sum runs in float64, as the C++ kernel's running sums do.
    """
    t = w.shape[1]
    if mode == "cumulative":
        counts = torch.arange(1, t + 1, dtype=torch.float64, device=w.device).unsqueeze(-1)
        return (w.double().cumsum(dim=1) / counts).to(w.dtype)
    # EMA as one matrix product: e_t = a^t w_0 + sum_{1<=s<=t} (1 - a) a^(t-s) w_s.
    steps = torch.arange(t, dtype=torch.float64, device=w.device)
    lag = steps.unsqueeze(1) - steps.unsqueeze(0)
    weights = torch.where(lag >= 0, (1 - ema_decay) * ema_decay ** lag.clamp(min=0), torch.zeros_like(lag))
    weights[:, 0] = ema_decay ** steps
    return torch.einsum("ts,nsc->ntc", weights, w.double()).to(w.dtype)


class GlobalCnnBlock(nn.Module):
    """One residual block; (N, T, channels) -> same, causal in time."""

    def __init__(self, channels: int, hidden: int, se_hidden: int, dilation: int, squeeze: str,
                 ema_decay: float) -> None:
        super().__init__()
        self.dilation, self.squeeze, self.ema_decay = dilation, squeeze, ema_decay
        self.norm = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)
        self.pw1 = nn.Linear(channels, hidden)
        self.dw = nn.Conv1d(hidden, hidden, DEPTHWISE_KERNEL, dilation=dilation, groups=hidden)
        self.pw2 = nn.Linear(hidden, channels)
        self.se1 = nn.Linear(channels, se_hidden)
        self.se2 = nn.Linear(se_hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = F.relu(self.pw1(self.norm(x))).transpose(1, 2)
        u = F.pad(u, ((DEPTHWISE_KERNEL - 1) * self.dilation, 0))
        w = self.pw2(F.relu(self.dw(u)).transpose(1, 2))
        gate = torch.sigmoid(self.se2(F.relu(self.se1(causal_squeeze(w, self.squeeze, self.ema_decay)))))
        return x + w * gate


class GlobalCnn(nn.Module):
    """The global CNN: the part the C++ kernel streams."""

    def __init__(self, cfg: ConvRnntConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            GlobalCnnBlock(cfg.global_channels, cfg.global_hidden, cfg.se_hidden, cfg.dilation(b), cfg.squeeze,
                           cfg.ema_decay)
            for b in range(cfg.global_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class LocalCnn(nn.Module):
    """Residual causal Conv1d + ReLU layers over (N, T, channels).

    `cache` (layers, N, kernel - 1, channels) holds each layer's previous inputs; None means
    the utterance starts here (zeros). Returns the output and the new cache.
    """

    def __init__(self, channels: int, kernel: int, layers: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel) for _ in range(layers))

    def initial_cache(self, batch: int, channels: int) -> torch.Tensor:
        return torch.zeros(len(self.convs), batch, self.kernel - 1, channels)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cache is None:
            cache = self.initial_cache(x.shape[0], x.shape[2]).to(x)
        new_cache = []
        for layer, conv in enumerate(self.convs):
            full = torch.cat([cache[layer], x], dim=1)
            new_cache.append(full[:, full.shape[1] - (self.kernel - 1):])
            x = x + F.relu(conv(full.transpose(1, 2)).transpose(1, 2))
        return x, torch.stack(new_cache, dim=0)


class ConvRnntEncoder(nn.Module):
    def __init__(self, cfg: ConvRnntConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feature_mean", torch.zeros(cfg.num_bins))
        self.register_buffer("feature_inv_std", torch.ones(cfg.num_bins))
        self.subsampling = ConvSubsampling(cfg.num_bins, cfg.conv_channels, cfg.frontend_dim)
        self.local_in = nn.Linear(cfg.frontend_dim, cfg.local_channels)
        self.local_cnn = LocalCnn(cfg.local_channels, cfg.local_kernel, cfg.local_layers)
        self.global_in = nn.Linear(cfg.frontend_dim, cfg.global_channels)
        self.global_cnn = GlobalCnn(cfg)
        self.local_norm = nn.LayerNorm(cfg.local_channels)
        self.global_norm = nn.LayerNorm(cfg.global_channels)
        self.merge = nn.Linear(cfg.local_channels + cfg.global_channels, cfg.d_model)
        nn.init.zeros_(self.merge.weight)  # the branches start silent: the LSTM first reads the frames
        nn.init.zeros_(self.merge.bias)
        self.merge_norm = nn.LayerNorm(cfg.d_model)
        # Projected only where the cell is wider than d_model, as the baseline: torch's CPU LSTM with a
        # projection has no oneDNN kernel (slower steps), and (measured) it passed the front end ~400x
        # less gradient than the baseline's LSTM did at the same step.
        proj = cfg.d_model if cfg.rnn_hidden_size != cfg.d_model else 0
        self.lstm = nn.LSTM(cfg.d_model, cfg.rnn_hidden_size, cfg.num_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, proj_size=proj)
        self.out = nn.Linear(cfg.d_model, cfg.joiner_dim)
        for layer in range(cfg.num_layers):  # forget-gate bias, as in the baseline
            for kind in ("ih", "hh"):
                bias = getattr(self.lstm, f"bias_{kind}_l{layer}")
                with torch.no_grad():
                    bias[cfg.rnn_hidden_size:2 * cfg.rnn_hidden_size].fill_(0.5)

    def frontend(self, x: torch.Tensor, local_cache: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fbank (N, T, bins) -> "local" (N, T', local_width: the subsampled frames and the local
        CNN's output side by side), global CNN input (N, T', global_channels), new local cache."""
        sub = self.subsampling((x - self.feature_mean) * self.feature_inv_std)
        local, new_cache = self.local_cnn(self.local_in(sub), local_cache)
        return torch.cat([sub, local], dim=-1), self.global_in(sub), new_cache

    def merge_branches(self, local: torch.Tensor, global_out: torch.Tensor) -> torch.Tensor:
        """The subsampled frames plus the projection of both branches (each normalized per frame),
        normalized: the LSTM's input."""
        sub, local_cnn = local.split([self.cfg.frontend_dim, self.cfg.local_channels], dim=-1)
        branches = torch.cat([self.local_norm(local_cnn), self.global_norm(global_out)], dim=-1)
        return self.merge_norm(sub + self.merge(branches))

    def rest(self, local: torch.Tensor, global_out: torch.Tensor,
             state: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Merge the branches and run the LSTM: -> (N, T', joiner_dim), new (h, c)."""
        x = self.merge_branches(local, global_out)
        if state is None:
            c = self.cfg
            state = (torch.zeros(c.num_layers, x.shape[0], c.d_model).to(x),
                     torch.zeros(c.num_layers, x.shape[0], c.rnn_hidden_size).to(x))
        x, (h, c) = self.lstm(x, state)
        return self.out(x), (h, c)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Full-utterance causal pass: x (N, T, bins) -> (N, T', joiner_dim), LSTM (h, c)."""
        local, global_in, _ = self.frontend(x)
        return self.rest(local, self.global_cnn(global_in), state)


class ConvRnnt(nn.Module):
    """Same interface as LstmTransducer (encoder, decoder, joiner, ctc_head, cfg)."""

    def __init__(self, cfg: ConvRnntConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = ConvRnntEncoder(cfg)
        self.decoder = StatelessDecoder(cfg)
        self.joiner = Joiner(cfg)
        self.ctc_head = nn.Linear(cfg.joiner_dim, cfg.vocab_size)  # training aid only, not exported
