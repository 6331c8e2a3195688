"""Compute-cost amortized Transformer-transducer: attention and feed-forward parts gated per frame.

Encoder, per utterance (N, T, bins) fbank:
  normalization -> the baseline's conv subsampling x4 (no time padding, so the streaming
  window contract is the baseline's: windows of chunk_frames + 3 fbank frames every
  chunk_frames) -> `num_layers` pre-LayerNorm blocks
      x = x + g_att(t) * MHA(LN1(x))     (causal, keys t - left_context .. t)
      x = x + g_ff(t)  * FF(LN2(x))      (Linear -> ReLU -> Linear)
  -> LayerNorm -> Linear to the joiner dimension.
Decoder and joiner are the baseline's.

Both parts sit on residual connections, so a part that is off for frame t outputs zero and
costs nothing. Arbitrators decide per frame (`arbitrator`):
  "none"     the dense model: every gate on, no arbitrator (the warm start and reference);
  "feature"  one small causal network on the front end's output (a causal Conv1d of
             `arbitrator_kernel` frames -> ReLU -> Linear to 2 * num_layers logits), so every
             decision of a frame is known before any block runs;
  "block"    per block a small MLP (Linear -> ReLU -> Linear to 2 logits) on the block input.
Gate logits are ordered [layer0 attention, layer0 feed-forward, layer1 attention, ...]; a part
is on when sigmoid(logit) > threshold (the run-time compute dial; 0.5 in training's eval).

Skip rule: FULL-SKIP. A frame whose attention part is off computes nothing for attention:
no query, no key, no value, no output. It is not a key for any frame: training masks it out
(the attention weights of off keys are multiplied by the key's gate and renormalized, which
in the forward pass is exactly a softmax over the on keys) and the engine's ring cache holds
only the keys and values of on frames. An on frame always sees at least itself.

Training: hard gates in the forward pass with a straight-through Gumbel-sigmoid gradient
(temperature annealed from `tau_start` to `tau_end` over `tau_anneal_steps`; the hard
decision sign(logit + logistic noise) does not depend on the temperature, only the gradient
does); `auxiliary_loss` adds compute_lambda * the expected fraction of encoder MACs, from the
arbitrators' probabilities and the real per-part MAC counts of `part_macs` (attention's
score and value products are counted per query with the expected number of on keys in its
window, so full-skip's cheaper keys are counted too).

`wake_cost_frames` (0 by default: the paper's per-frame MAC cost) makes that cost the engine's
wall time instead: a part that runs for any frame of a streaming chunk streams its weights from
memory once for the chunk, which costs about as much as computing `wake_cost_frames` more
frames (benchmarks/README.md, "Compute savings"). The term added per chunk and part is
wake_cost_frames * the part's MACs * P(any frame of the chunk on) = 1 - prod(1 - p_t), and the
dense denominator pays it for every chunk, so the fraction stays 1 for a dense model. Gates that
agree within a chunk then cost less than the same number scattered over more chunks.

`nonspeech_compute_lambda` (0 by default) adds a second term: that weight * the expected MAC
fraction over the frames without speech (the trainer flags padding crops and silence/noise
segments). Training batches hold mostly speech, a deployed always-listening device hears mostly
none: the uniform term prices a silent frame as a speech frame, so it buys less saving there than
the device needs; this term weighs the frames where compute is wasted most. Run time is unchanged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from framegate.export.models.lstm_transducer import (LOOKAHEAD_FRAMES, SUBSAMPLING, ConvSubsampling, Joiner,
                                                     StatelessDecoder)

ARBITRATORS = ("none", "feature", "block")
SKIP_RULE = "full-skip"
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class GatedTransformerConfig:
    num_bins: int = 80
    vocab_size: int = 256
    conv_channels: int = 64
    d_model: int = 256
    num_heads: int = 4
    ff_dim: int = 1024
    num_layers: int = 6
    left_context: int = 64          # encoder frames (40 ms each) a query may look back
    joiner_dim: int = 320
    decoder_dim: int = 320
    context_size: int = 2
    dropout: float = 0.1
    chunk_frames: int = 16
    arbitrator: str = "none"
    arbitrator_kernel: int = 5      # "feature": causal conv width in encoder frames
    arbitrator_hidden: int = 64
    gate_init_bias: float = 3.0     # arbitrator logits start here: gates on, a warm start stays dense
    compute_lambda: float = 0.0     # weight of the expected compute fraction in the loss
    nonspeech_compute_lambda: float = 0.0  # weight of the expected compute fraction on frames without speech
    wake_cost_frames: float = 0.0   # per chunk a woken part also costs this many frames of its MACs
    tau_start: float = 1.0
    tau_end: float = 0.1
    tau_anneal_steps: int = 4000

    def validate(self) -> None:
        for name in ("num_bins", "vocab_size", "conv_channels", "d_model", "num_heads", "ff_dim", "num_layers",
                     "left_context", "joiner_dim", "decoder_dim", "context_size", "chunk_frames",
                     "arbitrator_kernel", "arbitrator_hidden", "tau_anneal_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"GatedTransformerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_frames % SUBSAMPLING:
            raise ValueError(f"GatedTransformerConfig.chunk_frames must be a multiple of {SUBSAMPLING}")
        if self.d_model % self.num_heads:
            raise ValueError("GatedTransformerConfig.d_model must be a multiple of num_heads")
        if self.arbitrator not in ARBITRATORS:
            raise ValueError(f"GatedTransformerConfig.arbitrator must be one of {ARBITRATORS}, "
                             f"got {self.arbitrator!r}")
        if (min(self.compute_lambda, self.nonspeech_compute_lambda, self.wake_cost_frames) < 0
                or not 0 < self.tau_end <= self.tau_start):
            raise ValueError("GatedTransformerConfig: need compute_lambda, nonspeech_compute_lambda and "
                             "wake_cost_frames >= 0 and 0 < tau_end <= tau_start")

    @property
    def window_frames(self) -> int:
        return self.chunk_frames + LOOKAHEAD_FRAMES

    @property
    def num_gates(self) -> int:
        return 2 * self.num_layers

    def to_dict(self) -> dict:
        return asdict(self)


def part_macs(cfg: GatedTransformerConfig) -> dict[str, int]:
    """Multiply-accumulates per encoder frame of each part, from the config's shapes.

    frontend: the subsampling convs and projection over one window, divided by the window's
    encoder frames (the overlap the window recomputes is counted). attention_fixed: the
    query/key/value and output projections of one on frame; attention_per_key: its score and
    value products per key it attends to (full attention has left_context + 1 keys).
    feed_forward: one on frame. arbitrator: every frame, every layer. output: final projection.
    dense_per_frame: everything on with full left context, the denominator of every fraction.
    """
    d, bins, c = cfg.d_model, cfg.num_bins, cfg.conv_channels
    t1, f1 = (cfg.window_frames - 3) // 2 + 1, (bins - 3) // 2 + 1
    t2, f2 = (t1 - 3) // 2 + 1, (f1 - 3) // 2 + 1
    frontend = (c * 9 * t1 * f1 + c * c * 9 * t2 * f2 + c * f2 * d * t2) // t2
    h, g = cfg.arbitrator_hidden, cfg.num_gates
    arbitrator = {"none": 0, "feature": cfg.arbitrator_kernel * d * h + h * g,
                  "block": cfg.num_layers * (d * h + h * 2)}[cfg.arbitrator]
    macs = {"frontend": frontend, "arbitrator": arbitrator, "attention_fixed": 4 * d * d,
            "attention_per_key": 2 * d, "feed_forward": 2 * d * cfg.ff_dim, "output": d * cfg.joiner_dim}
    dense_block = macs["attention_fixed"] + macs["attention_per_key"] * (cfg.left_context + 1) + macs["feed_forward"]
    macs["dense_per_frame"] = frontend + arbitrator + cfg.num_layers * dense_block + macs["output"]
    return macs


def allowed_keys(frames: int, left_context: int) -> torch.Tensor:
    """(T, T) bool: query t may attend to key s when t - left_context <= s <= t."""
    t = torch.arange(frames)
    lag = t.unsqueeze(1) - t.unsqueeze(0)
    return (lag >= 0) & (lag <= left_context)


class GatedBlock(nn.Module):
    """One pre-LayerNorm block; each part is weighted by its per-frame gate (0 = skipped)."""

    def __init__(self, cfg: GatedTransformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.num_heads = cfg.num_heads
        self.norm_att = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.qkv = nn.Linear(d, 3 * d)
        self.att_out = nn.Linear(d, d)
        self.norm_ff = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.ff1 = nn.Linear(d, cfg.ff_dim)
        self.ff2 = nn.Linear(cfg.ff_dim, d)
        self.dropout = nn.Dropout(cfg.dropout)

    def attention(self, x: torch.Tensor, key_gate: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Full-skip attention: keys weighted by their (straight-through) gate (N, T)."""
        n, t, d = x.shape
        dh = d // self.num_heads
        q, k, v = self.qkv(self.norm_att(x)).view(n, t, 3, self.num_heads, dh).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)             # (N, H, T, T)
        scores = scores.masked_fill(~allowed, float("-inf"))
        on = (key_gate > 0.5).detach()[:, None, None, :]
        peak = scores.masked_fill(~on, float("-inf")).amax(-1, keepdim=True).detach()
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        weights = torch.exp(scores - peak) * key_gate[:, None, None, :]
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)
        out = (weights @ v).transpose(1, 2).reshape(n, t, d)
        return self.att_out(out)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff2(self.dropout(F.relu(self.ff1(self.norm_ff(x)))))

    def forward(self, x: torch.Tensor, g_att: torch.Tensor, g_ff: torch.Tensor, allowed: torch.Tensor
                ) -> torch.Tensor:
        x = x + g_att.unsqueeze(-1) * self.dropout(self.attention(x, g_att, allowed))
        return x + g_ff.unsqueeze(-1) * self.dropout(self.feed_forward(x))


class FeatureArbitrator(nn.Module):
    """Causal Conv1d over front-end frames -> ReLU -> Linear: (N, T, d) -> (N, T, 2L) logits."""

    def __init__(self, cfg: GatedTransformerConfig) -> None:
        super().__init__()
        self.kernel = cfg.arbitrator_kernel
        self.conv = nn.Conv1d(cfg.d_model, cfg.arbitrator_hidden, cfg.arbitrator_kernel)
        self.out = nn.Linear(cfg.arbitrator_hidden, cfg.num_gates)
        with torch.no_grad():
            self.out.bias.fill_(cfg.gate_init_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(F.pad(x.transpose(1, 2), (self.kernel - 1, 0))))
        return self.out(h.transpose(1, 2))


class BlockArbitrator(nn.Module):
    """Per block: Linear -> ReLU -> Linear on the block input: (N, T, d) -> (N, T, 2) logits."""

    def __init__(self, cfg: GatedTransformerConfig) -> None:
        super().__init__()
        self.hidden = nn.Linear(cfg.d_model, cfg.arbitrator_hidden)
        self.out = nn.Linear(cfg.arbitrator_hidden, 2)
        with torch.no_grad():
            self.out.bias.fill_(cfg.gate_init_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(x)))


class GatedTransformerEncoder(nn.Module):
    def __init__(self, cfg: GatedTransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feature_mean", torch.zeros(cfg.num_bins))
        self.register_buffer("feature_inv_std", torch.ones(cfg.num_bins))
        self.subsampling = ConvSubsampling(cfg.num_bins, cfg.conv_channels, cfg.d_model)
        self.blocks = nn.ModuleList(GatedBlock(cfg) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS)
        self.out = nn.Linear(cfg.d_model, cfg.joiner_dim)
        self.feature_arbitrator = FeatureArbitrator(cfg) if cfg.arbitrator == "feature" else None
        self.block_arbitrators = (nn.ModuleList(BlockArbitrator(cfg) for _ in range(cfg.num_layers))
                                  if cfg.arbitrator == "block" else None)
        self.tau = cfg.tau_start
        self.threshold = 0.5
        self.last_probs: torch.Tensor | None = None   # (N, T', 2L) arbitrator probabilities of the last call
        self.last_gates: torch.Tensor | None = None   # (N, T', 2L) hard decisions of the last call

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, bins) fbank -> (N, T', d_model): the ungated front end (frontend.onnx)."""
        return self.subsampling((x - self.feature_mean) * self.feature_inv_std)

    def _gates(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(straight-through gates, probabilities) for gate logits."""
        probs = torch.sigmoid(logits)
        if self.training:
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.tau)
            hard = (soft > 0.5).to(logits.dtype)
            return hard + soft - soft.detach(), probs
        return (probs > self.threshold).to(logits.dtype), probs

    def blocks_forward(self, frames: torch.Tensor, gates: torch.Tensor | None = None) -> torch.Tensor:
        """(N, T', d) front-end frames -> (N, T', joiner_dim), whole utterances from their start.

        gates: optional (N, T', 2L) hard decisions to use instead of the arbitrators' (tests
        force the engine's decisions); the arbitrators still run so `last_probs` is filled.
        """
        cfg = self.cfg
        n, t, _ = frames.shape
        allowed = allowed_keys(t, cfg.left_context).to(frames.device)
        ones = torch.ones(n, t, dtype=frames.dtype, device=frames.device)
        feature_gates = feature_probs = None
        if self.feature_arbitrator is not None:
            feature_gates, feature_probs = self._gates(self.feature_arbitrator(frames))
        probs, used = [], []
        x = frames
        for layer, block in enumerate(self.blocks):
            if feature_gates is not None:
                g, p = feature_gates[..., 2 * layer:2 * layer + 2], feature_probs[..., 2 * layer:2 * layer + 2]
            elif self.block_arbitrators is not None:
                g, p = self._gates(self.block_arbitrators[layer](x))
            else:
                g, p = torch.stack([ones, ones], -1), torch.stack([ones, ones], -1)
            if gates is not None:
                g = gates[..., 2 * layer:2 * layer + 2].to(frames.dtype)
            probs.append(p)
            used.append(g)
            x = block(x, g[..., 0], g[..., 1], allowed)
        self.last_probs = torch.cat(probs, -1)
        self.last_gates = torch.cat(used, -1)
        return self.out(self.norm_out(x))

    def forward(self, x: torch.Tensor, state: None = None, gates: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, None]:
        """x (N, T, bins) fbank -> (N, T', joiner_dim); the training face (state is unused)."""
        return self.blocks_forward(self.frontend(x), gates), None

    def expected_compute_fraction(self) -> torch.Tensor:
        """(N, T') expected MACs / dense MACs per frame, from the last call's probabilities."""
        cfg, macs = self.cfg, part_macs(self.cfg)
        probs = self.last_probs
        fixed = macs["frontend"] + macs["arbitrator"] + macs["output"]
        total = torch.full(probs.shape[:2], float(fixed), dtype=probs.dtype, device=probs.device)
        w = cfg.left_context
        for layer in range(cfg.num_layers):
            p_att, p_ff = probs[..., 2 * layer], probs[..., 2 * layer + 1]
            csum = F.pad(p_att.cumsum(1), (1, 0))
            lo = (torch.arange(p_att.shape[1], device=probs.device) - w).clamp(min=0)
            keys = csum[:, 1:] - csum[:, lo]  # expected on keys in [t - W, t]
            total = total + p_att * (macs["attention_fixed"] + macs["attention_per_key"] * keys)
            total = total + p_ff * macs["feed_forward"]
        return total / macs["dense_per_frame"]

    def expected_wakes(self, valid: torch.Tensor) -> torch.Tensor:
        """(N, chunks, 2L) probability that each part runs for any real frame of each streaming chunk."""
        per_chunk = self.cfg.chunk_frames // SUBSAMPLING
        off = 1 - self.last_probs * valid.unsqueeze(-1).to(self.last_probs.dtype)  # padding never runs
        n, t, g = off.shape
        off = F.pad(off, (0, 0, 0, -t % per_chunk), value=1.0)
        return 1 - off.view(n, -1, per_chunk, g).prod(2)


class GatedTransformer(nn.Module):
    def __init__(self, cfg: GatedTransformerConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = GatedTransformerEncoder(cfg)
        self.decoder = StatelessDecoder(cfg)
        self.joiner = Joiner(cfg)
        self.ctc_head = nn.Linear(cfg.joiner_dim, cfg.vocab_size)  # training aid only, not exported

    def set_training_step(self, step: int) -> None:
        """Anneal the Gumbel temperature geometrically from tau_start to tau_end."""
        c = self.cfg
        progress = min(1.0, step / c.tau_anneal_steps)
        self.encoder.tau = c.tau_start * (c.tau_end / c.tau_start) ** progress

    def auxiliary_loss(self, enc_lengths: torch.Tensor, nonspeech: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        """compute_lambda * the expected encoder cost fraction over the last batch's real frames:
        MACs, plus each chunk's part wake-ups when wake_cost_frames > 0 (module docstring); plus
        nonspeech_compute_lambda * the expected MAC fraction over the frames `nonspeech` (N, T')
        flags, which an always-listening device hears most of its life."""
        if self.cfg.arbitrator == "none":
            return torch.zeros(()), {}
        cfg = self.cfg
        fraction = self.encoder.expected_compute_fraction()
        valid = torch.arange(fraction.shape[1]).unsqueeze(0) < enc_lengths.unsqueeze(1)
        frames = valid.sum().clamp(min=1)
        mean = (fraction * valid).sum() / frames
        hard_on = float((self.encoder.last_gates > 0.5).float().mean())
        parts = {"compute": float(mean.detach()), "gates_on": hard_on, "tau": self.encoder.tau}
        extra = torch.zeros(())
        if nonspeech is not None and bool((quiet := nonspeech & valid).any()):
            quiet_mean = (fraction * quiet).sum() / quiet.sum()
            parts["compute_nonspeech"] = float(quiet_mean.detach())
            extra = cfg.nonspeech_compute_lambda * quiet_mean
        if cfg.wake_cost_frames == 0:
            return cfg.compute_lambda * mean + extra, parts
        macs = part_macs(cfg)
        dense_part = torch.tensor([macs["attention_fixed"] + macs["attention_per_key"] * (cfg.left_context + 1),
                                   macs["feed_forward"]] * cfg.num_layers, dtype=fraction.dtype)
        wakes = self.encoder.expected_wakes(valid)
        chunks = (enc_lengths + cfg.chunk_frames // SUBSAMPLING - 1) // (cfg.chunk_frames // SUBSAMPLING)
        wake_macs = cfg.wake_cost_frames * (wakes * dense_part).sum()
        dense_wake_macs = cfg.wake_cost_frames * dense_part.sum() * chunks.sum()
        dense = macs["dense_per_frame"] * frames
        cost = (mean * dense + wake_macs) / (dense + dense_wake_macs)
        parts.update(cost=float(cost.detach()),
                     chunk_parts_on=float((wakes > 0.5).float().sum() / (chunks.sum() * cfg.num_gates)))
        return cfg.compute_lambda * cost + extra, parts
