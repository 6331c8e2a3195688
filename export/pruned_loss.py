"""Pruned transducer loss (Kuang et al. 2022, as k2's rnnt_loss_pruned), so that training runs
the joiner on a few label positions per frame instead of all U+1.

The full joiner costs B*T*(U+1)*joiner_dim*V multiply-adds forward and twice that backward, as
much as a Transformer encoder's and the largest share of a training step. A "simple" joiner, the
sum of a vocabulary projection of the encoder frame and one of the prediction-network output,
gives the whole lattice for B*T*(U+1)*V; its node occupancies choose for every frame a window of
s_range label positions, and the real joiner runs only there. Transitions outside the windows get
probability zero, so the pruned loss is the transducer loss of that restricted lattice (exactly
the full loss when the windows cover all U+1 positions). Both losses are trained: the simple one
keeps the windows where the alignments are.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
import torch.nn as nn

from framegate.export.loss import lattice_nll, validate_targets


class SimpleJoiner(nn.Module):
    """Training-only log-linear joiner: logit(t, u, v) = am(enc_t)_v + lm(dec_u)_v."""

    def __init__(self, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.am = nn.Linear(joiner_dim, vocab_size)
        self.lm = nn.Linear(joiner_dim, vocab_size)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, label_ids: torch.Tensor,
                blank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """enc (B, T, J), dec (B, U+1, J), label_ids (B, U) -> float64 blank_lp (B, T, U+1) and
        label_lp (B, T, U). The normalizer over the vocabulary is one batched matrix product of
        exponentials (each shifted by its maximum), never a (B, T, U+1, V) tensor."""
        am = self.am(enc).double()
        lm = self.lm(dec).double()
        am_max = am.amax(-1, keepdim=True).detach()
        lm_max = lm.amax(-1, keepdim=True).detach()
        norm = torch.matmul((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2)).log()
        norm = norm + am_max + lm_max.transpose(1, 2)
        labels = label_ids.shape[1]
        blank_lp = am[:, :, blank:blank + 1] + lm[:, :, blank].unsqueeze(1) - norm
        label_am = am.gather(2, label_ids.unsqueeze(1).expand(-1, am.shape[1], -1))
        label_lm = lm[:, :labels].gather(2, label_ids.unsqueeze(2)).transpose(1, 2)
        return blank_lp, label_am + label_lm - norm[:, :, :labels]


@numba.njit(cache=True)
def _window_starts(occupancy, frames, target_lens, s_range, starts):
    """For every utterance and frame the first label position of its window of s_range.

    Each frame takes the window holding most of its occupancy, then two passes make a path
    through the windows exist: forward, windows never move back and move on by at most
    s_range - 1 (the last position of a frame's window must reach the next one's); backward,
    the last frame's window ends at the final label. The batch's s_range guarantees
    frames * (s_range - 1) >= labels, so the first frame's window still starts at 0.
    """
    for b in range(occupancy.shape[0]):
        n_t, n_u = frames[b], target_lens[b]
        last = max(n_u + 1 - s_range, 0)
        for t in range(n_t):
            best, best_sum = 0, -1.0
            for s in range(last + 1):
                total = 0.0
                for u in range(s, min(s + s_range, n_u + 1)):
                    total += occupancy[b, t, u]
                if total > best_sum:
                    best, best_sum = s, total
            starts[b, t] = best
        starts[b, 0] = 0
        for t in range(1, n_t):
            starts[b, t] = min(max(starts[b, t], starts[b, t - 1]), starts[b, t - 1] + s_range - 1)
        starts[b, n_t - 1] = last
        for t in range(n_t - 2, -1, -1):
            starts[b, t] = max(starts[b, t], starts[b, t + 1] - (s_range - 1))
        for t in range(n_t, starts.shape[1]):
            starts[b, t] = last


def window_starts(occupancy: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
                  s_range: int) -> torch.Tensor:
    """(B, T) int64 first label position of every frame's window (see _window_starts)."""
    starts = np.zeros(occupancy.shape[:2], dtype=np.int64)
    _window_starts(occupancy.numpy(), logit_lengths.to(torch.int64).numpy(), target_lengths.to(torch.int64).numpy(),
                   s_range, starts)
    return torch.from_numpy(starts)


def batch_s_range(s_range: int, logit_lengths: torch.Tensor, target_lengths: torch.Tensor) -> int:
    """s_range widened until every utterance has a path (at most s_range - 1 labels a frame)
    and capped at the batch's U+1 (where pruning removes nothing)."""
    needed = max(math.ceil(int(u) / int(t)) + 1 for t, u in zip(logit_lengths.tolist(), target_lengths.tolist()))
    return min(max(s_range, needed), int(target_lengths.max()) + 1)


def pruned_rnnt_loss(enc: torch.Tensor, dec: torch.Tensor, joiner: nn.Module, simple: SimpleJoiner,
                     targets: torch.Tensor, logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
                     s_range: int, blank: int = 0, fastemit_lambda: float = 0.0,
                     delay_penalty: float = 0.0, token_penalty: tuple[int, torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-mean (pruned, simple) transducer NLLs.

    enc (B, T, J) encoder output and dec (B, U+1, J) prediction-network output, both already
    in the joiner's space; joiner(enc (.., 1, J), dec (.., S, J)) -> logits (.., S, V) as in
    training's full loss; targets (B, U) padded past target_lengths. FastEmit and the delay
    penalty apply to both lattices, as in rnnt_loss. token_penalty (token, (B, T, U+1)) is
    subtracted from that token's logit at every node before the softmax (the two-speaker
    model's late-<eot> penalty), in the pruned lattice only: the simple one just places windows.
    """
    if enc.dim() != 3 or dec.dim() != 3 or enc.shape[0] != dec.shape[0] or enc.shape[2] != dec.shape[2]:
        raise ValueError(f"enc {tuple(enc.shape)} and dec {tuple(dec.shape)} must be (B, T, J) and (B, U+1, J)")
    if not isinstance(s_range, int) or s_range < 1:
        raise ValueError(f"s_range must be an int >= 1, got {s_range!r}")
    batch, frames, _ = enc.shape
    labels = dec.shape[1] - 1
    valid = validate_targets(batch, frames, labels, simple.am.out_features, targets, logit_lengths, target_lengths,
                             blank, fastemit_lambda, delay_penalty)
    label_ids = targets.long().masked_fill(~valid, blank)

    blank_lp, label_lp = simple(enc, dec, label_ids, blank)
    simple_nll, occupancy = lattice_nll(blank_lp, label_lp, logit_lengths, target_lengths, fastemit_lambda,
                                        delay_penalty)

    width = batch_s_range(s_range, logit_lengths, target_lengths)
    positions = window_starts(occupancy, logit_lengths, target_lengths, width).unsqueeze(2) + torch.arange(width)
    rows = torch.arange(batch).view(batch, 1, 1)
    logits = joiner(enc.unsqueeze(2), dec[rows, positions])
    if token_penalty is not None:
        token, penalty = token_penalty
        window_penalty = penalty.gather(2, positions).to(logits.dtype)
        logits = torch.cat([logits[..., :token], logits[..., token:token + 1] - window_penalty.unsqueeze(3),
                            logits[..., token + 1:]], dim=3)
    log_probs = logits.log_softmax(-1)
    window_ids = torch.cat([label_ids, torch.full((batch, 1), blank)], 1)[rows, positions]
    window_blank = log_probs[..., blank]
    window_label = log_probs.gather(3, window_ids.unsqueeze(3)).squeeze(3)
    empty = torch.full((batch, frames, labels + 1), -math.inf, dtype=log_probs.dtype)
    pruned_blank = empty.scatter(2, positions, window_blank)
    pruned_label = empty.scatter(2, positions, window_label)[:, :, :labels]
    pruned_nll, _ = lattice_nll(pruned_blank, pruned_label, logit_lengths, target_lengths, fastemit_lambda,
                                delay_penalty)
    return pruned_nll.mean(), simple_nll.mean().to(pruned_nll.dtype)
