"""Separator-transducer-segmenter (STS, Sklyar et al.; DESIGN.md): two-speaker streaming recognition.

    fbank -> normalization -> conv subsampling x4 (the baseline's, lookahead 3 frames)
      -> mixture encoder: causal LSTM layers over the mixture (shared)
      -> separator: per channel a frame-wise mask over the mixture features plus a channel
         vector (two output channels: at most two voices at once)
      -> recognition encoder: LSTM layers run on each channel (weights tied across channels)
      -> per channel: encoder frames for the joiner, and a speech-activity logit
    prediction network and joiner: the baseline's, tied across channels.

Each channel's target is its turns in order, each wrapped as `<sot> words <eot>`; a turn
goes to the first channel free at its start (export/conversations.py `assign_channels`).
Everything is causal and frame-wise after the subsampling, so windows of `chunk_frames + 3`
fbank frames with the LSTM states (mixture h/c, recognition h/c for both channels) carried
in between give exactly the frames of one pass over the whole signal, as for the baseline.

The layer split mirrors the single-speaker model so it can be warm-started from one:
its first `mix_layers` LSTM layers become the mixture encoder, the rest the recognition
encoder; the separator starts as an almost-open mask (both channels see the mixture), and
the two turn tokens are new rows appended to the vocabulary (`warm_start_state`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from framegate.export.models.lstm_transducer import (LOOKAHEAD_FRAMES, SUBSAMPLING, ConvSubsampling, Joiner,
                                                     StatelessDecoder)

SOT_PIECE = "<sot>"
EOT_PIECE = "<eot>"
CHANNELS = 2


@dataclass(frozen=True)
class StsConfig:
    """Sizes as the baseline's LstmTransducerConfig, the layer split, and the STS loss weights.

    vocab_size counts the two turn tokens, which are the last two ids (sot = vocab_size - 2,
    eot = vocab_size - 1), so a single-speaker vocabulary of V pieces becomes V + 2.
    """

    num_bins: int = 80
    vocab_size: int = 258
    conv_channels: int = 64
    d_model: int = 320
    rnn_hidden_size: int = 640
    mix_layers: int = 1
    rec_layers: int = 2
    joiner_dim: int = 320
    decoder_dim: int = 320
    context_size: int = 2
    dropout: float = 0.1
    chunk_frames: int = 8
    fastemit_lambda: float = 0.001
    activity_weight: float = 0.2      # BCE of the per-channel speech-activity head
    eot_late_penalty: float = 0.05    # logit penalty per encoder frame of <eot> delay (see sts_train)
    eot_tolerance_frames: int = 5     # delay (40 ms frames) the penalty forgives

    def validate(self) -> None:
        for name in ("num_bins", "vocab_size", "conv_channels", "d_model", "rnn_hidden_size", "mix_layers",
                     "rec_layers", "joiner_dim", "decoder_dim", "context_size", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"StsConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < 5:
            raise ValueError("StsConfig.vocab_size must hold <blk>, <unk>, a piece, <sot> and <eot>")
        if self.chunk_frames % SUBSAMPLING:
            raise ValueError(f"StsConfig.chunk_frames must be a multiple of {SUBSAMPLING}")
        if self.rnn_hidden_size < self.d_model:
            raise ValueError("StsConfig.rnn_hidden_size must be >= d_model (projected LSTM)")
        for name in ("fastemit_lambda", "activity_weight", "eot_late_penalty", "eot_tolerance_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"StsConfig.{name} must be >= 0")

    @property
    def window_frames(self) -> int:
        return self.chunk_frames + LOOKAHEAD_FRAMES

    @property
    def num_layers(self) -> int:
        return self.mix_layers + self.rec_layers

    @property
    def sot_id(self) -> int:
        return self.vocab_size - 2

    @property
    def eot_id(self) -> int:
        return self.vocab_size - 1

    def to_dict(self) -> dict:
        return asdict(self)


StsState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # mix_h, mix_c, rec_h, rec_c


def _lstm(cfg: StsConfig, layers: int) -> nn.LSTM:
    """As the baseline's: projected only when the cell is wider than d_model; forget bias raised."""
    proj = cfg.d_model if cfg.rnn_hidden_size != cfg.d_model else 0
    lstm = nn.LSTM(cfg.d_model, cfg.rnn_hidden_size, layers, batch_first=True,
                   dropout=cfg.dropout if layers > 1 else 0.0, proj_size=proj)
    for layer in range(layers):
        for kind in ("ih", "hh"):
            with torch.no_grad():
                getattr(lstm, f"bias_{kind}_l{layer}")[cfg.rnn_hidden_size:2 * cfg.rnn_hidden_size].fill_(0.5)
    return lstm


class Separator(nn.Module):
    """(N, T, d) mixture features -> (N, C, T, d): a sigmoid mask per channel plus a channel vector.

    Frame-wise, so it adds no state and no lookahead. Initialized almost open (bias 3) with
    small distinct channel vectors: at a warm start both channels hear the whole mixture.
    """

    def __init__(self, d_model: int, channels: int = CHANNELS) -> None:
        super().__init__()
        self.channels = channels
        self.mask = nn.Linear(d_model, channels * d_model)
        self.channel_vector = nn.Parameter(0.1 * torch.randn(channels, d_model))
        with torch.no_grad():
            self.mask.weight.mul_(0.1)
            self.mask.bias.fill_(3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        masks = torch.sigmoid(self.mask(x)).view(n, t, self.channels, d).permute(0, 2, 1, 3)
        return x.unsqueeze(1) * masks + self.channel_vector.view(1, self.channels, 1, d)


class StsEncoder(nn.Module):
    def __init__(self, cfg: StsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("feature_mean", torch.zeros(cfg.num_bins))
        self.register_buffer("feature_inv_std", torch.ones(cfg.num_bins))
        self.subsampling = ConvSubsampling(cfg.num_bins, cfg.conv_channels, cfg.d_model)
        self.mix_lstm = _lstm(cfg, cfg.mix_layers)
        self.separator = Separator(cfg.d_model)
        self.rec_lstm = _lstm(cfg, cfg.rec_layers)
        self.out = nn.Linear(cfg.d_model, cfg.joiner_dim)
        self.activity = nn.Linear(cfg.d_model, 1)

    def initial_state(self, batch: int) -> StsState:
        c = self.cfg
        return (torch.zeros(c.mix_layers, batch, c.d_model), torch.zeros(c.mix_layers, batch, c.rnn_hidden_size),
                torch.zeros(c.rec_layers, batch * CHANNELS, c.d_model),
                torch.zeros(c.rec_layers, batch * CHANNELS, c.rnn_hidden_size))

    def forward(self, x: torch.Tensor, state: StsState | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, StsState]:
        """x (N, T, bins) -> encoder frames (N, C, T', joiner_dim), activity logits (N, C, T'), new state.

        The recognition LSTM's batch is N*C, channel-minor (row n*C + c)."""
        x = (x - self.feature_mean) * self.feature_inv_std
        x = self.subsampling(x)
        n, t, d = x.shape
        if state is None:
            state = self.initial_state(n)
        mix_h, mix_c, rec_h, rec_c = state
        x, (mix_h, mix_c) = self.mix_lstm(x, (mix_h, mix_c))
        channels = self.separator(x).reshape(n * CHANNELS, t, d)
        y, (rec_h, rec_c) = self.rec_lstm(channels, (rec_h, rec_c))
        enc = self.out(y).view(n, CHANNELS, t, -1)
        activity = self.activity(y).view(n, CHANNELS, t)
        return enc, activity, (mix_h, mix_c, rec_h, rec_c)


class SeparatorTransducerSegmenter(nn.Module):
    """The STS model: `encoder`, and the baseline's `decoder`, `joiner`, `ctc_head` (tied across channels)."""

    def __init__(self, cfg: StsConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = StsEncoder(cfg)
        self.decoder = StatelessDecoder(cfg)
        self.joiner = Joiner(cfg)
        self.ctc_head = nn.Linear(cfg.joiner_dim, cfg.vocab_size)  # training aid only, not exported


def wrap_turns(turn_tokens: list[list[int]], sot_id: int, eot_id: int) -> list[int]:
    """One channel's target: each turn's token ids as `<sot> ids <eot>`, in order."""
    out: list[int] = []
    for ids in turn_tokens:
        out += [sot_id, *ids, eot_id]
    return out


def _split_lstm(state: dict, prefix: str, first: int, count: int, new_prefix: str) -> dict:
    """Layers first..first+count-1 of nn.LSTM `prefix` renamed as layers 0.. of `new_prefix`."""
    out = {}
    for key, value in state.items():
        if not key.startswith(prefix + "."):
            continue
        name = key[len(prefix) + 1:]
        base, _, layer = name.rpartition("_l")
        if layer.isdigit() and first <= int(layer) < first + count:
            out[f"{new_prefix}.{base}_l{int(layer) - first}"] = value
    return out


def warm_start_state(model: SeparatorTransducerSegmenter, single: dict) -> tuple[dict, list[str]]:
    """A state dict for `model` from a single-speaker LstmTransducer's, and the new tensor names.

    The single-speaker LSTM stack must have mix_layers + rec_layers layers of the same sizes;
    its vocabulary is this one's without the last two ids (<sot>, <eot>), whose rows start
    from the model's own initialization. ValueError when the shapes do not fit.
    """
    cfg = model.cfg
    layers = sum(1 for k in single if k.startswith("encoder.lstm.weight_ih_l"))
    if layers != cfg.num_layers:
        raise ValueError(f"the single-speaker model has {layers} LSTM layers; this STS splits "
                         f"{cfg.mix_layers} + {cfg.rec_layers}")
    mapped = {k: v for k, v in single.items() if k.startswith(("encoder.feature_", "encoder.subsampling.",
                                                                "encoder.out.", "decoder.", "joiner.", "ctc_head."))}
    mapped.update(_split_lstm(single, "encoder.lstm", 0, cfg.mix_layers, "encoder.mix_lstm"))
    mapped.update(_split_lstm(single, "encoder.lstm", cfg.mix_layers, cfg.rec_layers, "encoder.rec_lstm"))
    own = model.state_dict()
    result, added = {}, []
    for key, value in own.items():
        if key not in mapped:
            result[key] = value
            added.append(key)
            continue
        source = mapped[key]
        if source.shape == value.shape:
            result[key] = source
        elif source.shape[1:] == value.shape[1:] and source.shape[0] + 2 == value.shape[0]:
            result[key] = torch.cat([source, value[-2:]])  # vocabulary rows: <sot>, <eot> are new
            added.append(f"{key}[-2:]")
        else:
            raise ValueError(f"warm start: {key} is {tuple(source.shape)} in the single-speaker model, "
                             f"{tuple(value.shape)} here")
    unused = sorted(set(single) - {k for k in single if k.startswith("encoder.lstm.")} - set(mapped))
    if unused:
        raise ValueError(f"warm start: single-speaker tensors without a place here: {unused}")
    return result, added


def channel_ctc_loss(model: SeparatorTransducerSegmenter, enc: torch.Tensor, enc_len: torch.Tensor,
                     y: torch.Tensor, tlen: torch.Tensor, blank: int) -> torch.Tensor:
    """CTC over (N*C) channel rows, as the baseline's auxiliary loss (per example)."""
    lp = F.log_softmax(model.ctc_head(enc), dim=-1).transpose(0, 1)
    return F.ctc_loss(lp, y, enc_len, tlen, blank=blank, reduction="sum", zero_infinity=True) / len(enc_len)
