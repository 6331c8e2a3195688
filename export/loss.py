"""RNN-T (transducer) loss for training on CPU without torchaudio.

The loss is the negative log-likelihood of the targets summed over all monotonic
alignments of the (T, U+1) lattice (Graves 2012). The alpha/beta recursions run in numba
in float64; the gradient with respect to the raw joiner logits is computed in the forward
pass with the warp-transducer formula (softmax times node occupancy minus transition
posteriors), written into the log-softmax buffer so that at most two logits-sized tensors
(the logits and that buffer) are alive at any time.
"""

import math

import numba
import numpy as np
import torch

_REDUCTIONS = ("mean", "sum", "none")
_INT_DTYPES = (torch.int32, torch.int64)


@numba.njit(cache=True, nogil=True)
def _logaddexp(a, b):
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@numba.njit(parallel=True, cache=True, nogil=True)
def _lattice_weights(blank_lp, label_lp, frames, target_lens, fastemit_lambda,
                     loglik, softmax_weight, blank_weight, label_weight):
    """Fill per-utterance log-likelihoods and the gradient weights of every lattice node.

    blank_lp (B, T, U+1) and label_lp (B, T, U) are float64 log-probabilities of blank and of
    the next target label. The weight arrays must arrive zeroed; entries outside each
    utterance's (frames, target_len + 1) lattice are left at zero.
    """
    for b in numba.prange(blank_lp.shape[0]):
        n_t = frames[b]
        n_u = target_lens[b]
        alpha = np.empty((n_t, n_u + 1))
        beta = np.empty((n_t, n_u + 1))

        alpha[0, 0] = 0.0
        for t in range(n_t):
            for u in range(n_u + 1):
                if t == 0 and u == 0:
                    continue
                a = -np.inf
                if t > 0:
                    a = alpha[t - 1, u] + blank_lp[b, t - 1, u]
                if u > 0:
                    a = _logaddexp(a, alpha[t, u - 1] + label_lp[b, t, u - 1])
                alpha[t, u] = a

        for t in range(n_t - 1, -1, -1):
            for u in range(n_u, -1, -1):
                if t == n_t - 1 and u == n_u:
                    beta[t, u] = blank_lp[b, t, u]
                    continue
                bt = -np.inf
                if t < n_t - 1:
                    bt = beta[t + 1, u] + blank_lp[b, t, u]
                if u < n_u:
                    bt = _logaddexp(bt, beta[t, u + 1] + label_lp[b, t, u])
                beta[t, u] = bt

        ll = beta[0, 0]
        loglik[b] = ll
        for t in range(n_t):
            for u in range(n_u + 1):
                occupancy = math.exp(alpha[t, u] + beta[t, u] - ll)
                if t < n_t - 1:
                    p_blank = math.exp(alpha[t, u] + blank_lp[b, t, u] + beta[t + 1, u] - ll)
                elif u == n_u:
                    p_blank = math.exp(alpha[t, u] + blank_lp[b, t, u] - ll)
                else:
                    p_blank = 0.0
                p_label = 0.0
                if u < n_u:
                    p_label = math.exp(alpha[t, u] + label_lp[b, t, u] + beta[t, u + 1] - ll)
                    label_weight[b, t, u] = (1.0 + fastemit_lambda) * p_label
                softmax_weight[b, t, u] = occupancy + fastemit_lambda * p_label
                blank_weight[b, t, u] = p_blank


def _validate(logits, targets, logit_lengths, target_lengths, blank, reduction, fastemit_lambda, delay_penalty):
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        raise ValueError("logits must be a 4-D tensor (B, T, U+1, V)")
    if logits.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"logits must be float32 or float64, got {logits.dtype}")
    if logits.device.type != "cpu":
        raise ValueError(f"logits must be on the CPU, got {logits.device}")
    batch, frames, labels_plus_one, vocab = logits.shape
    if batch < 1 or frames < 1 or labels_plus_one < 1 or vocab < 2:
        raise ValueError(f"logits shape {tuple(logits.shape)} needs B >= 1, T >= 1, U+1 >= 1, V >= 2")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return validate_targets(batch, frames, labels_plus_one - 1, vocab, targets, logit_lengths, target_lengths, blank,
                            fastemit_lambda, delay_penalty)


def validate_targets(batch: int, frames: int, labels: int, vocab: int, targets: torch.Tensor,
                     logit_lengths: torch.Tensor, target_lengths: torch.Tensor, blank: int, fastemit_lambda: float,
                     delay_penalty: float) -> torch.Tensor:
    """Check the lattice's targets, lengths and options against a (batch, frames, labels + 1, vocab)
    joiner output; return the (B, U) mask of targets within target_lengths. ValueError names
    the offending argument."""
    if not isinstance(targets, torch.Tensor) or targets.dtype not in _INT_DTYPES:
        raise ValueError("targets must be an int32 or int64 tensor")
    if targets.device.type != "cpu":
        raise ValueError(f"targets must be on the CPU, got {targets.device}")
    if tuple(targets.shape) != (batch, labels):
        raise ValueError(f"targets shape {tuple(targets.shape)} != (B, U) = {(batch, labels)}")
    _validate_lengths(batch, frames, labels, logit_lengths, target_lengths)
    if not isinstance(blank, int) or not 0 <= blank < vocab:
        raise ValueError(f"blank must be an int in [0, {vocab}), got {blank!r}")
    valid = torch.arange(labels) < target_lengths[:, None]
    used = targets[valid]
    if bool((used < 0).any()) or bool((used >= vocab).any()) or bool((used == blank).any()):
        raise ValueError(f"targets within target_lengths must lie in [0, {vocab}) and differ from blank={blank}")
    _validate_options(fastemit_lambda, delay_penalty)
    return valid


def _validate_lengths(batch: int, frames: int, labels: int, logit_lengths: torch.Tensor,
                      target_lengths: torch.Tensor) -> None:
    for name, tensor, low, high in (("logit_lengths", logit_lengths, 1, frames),
                                    ("target_lengths", target_lengths, 0, labels)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype not in _INT_DTYPES:
            raise ValueError(f"{name} must be an int32 or int64 tensor")
        if tensor.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got {tensor.device}")
        if tuple(tensor.shape) != (batch,):
            raise ValueError(f"{name} shape {tuple(tensor.shape)} != (B,) = {(batch,)}")
        if bool((tensor < low).any()) or bool((tensor > high).any()):
            raise ValueError(f"{name} must lie in [{low}, {high}], got {tensor.tolist()}")


def _validate_options(fastemit_lambda: float, delay_penalty: float) -> None:
    if not isinstance(fastemit_lambda, (int, float)) or not math.isfinite(fastemit_lambda) or fastemit_lambda < 0:
        raise ValueError(f"fastemit_lambda must be a finite number >= 0, got {fastemit_lambda!r}")
    if not isinstance(delay_penalty, (int, float)) or not math.isfinite(delay_penalty) or delay_penalty < 0:
        raise ValueError(f"delay_penalty must be a finite number >= 0, got {delay_penalty!r}")


def _penalize_delay(label_lp: torch.Tensor, logit_lengths: torch.Tensor, delay_penalty: float) -> None:
    """Add delay_penalty * ((T_b - 1) / 2 - t) to every label emission at frame t, in place:
    each alignment's score changes by -delay_penalty times the sum of its emission frames
    (plus a constant), so the loss prefers alignments that emit earlier."""
    frames = torch.arange(label_lp.shape[1], dtype=torch.float64)
    centre = (logit_lengths.to(torch.float64) - 1.0) / 2.0
    label_lp.add_((delay_penalty * (centre[:, None] - frames[None, :])).unsqueeze(2))


class _RNNTLoss(torch.autograd.Function):
    """Loss in forward, gradient precomputed there too; backward only scales it (once)."""

    @staticmethod
    def forward(ctx, logits, targets, logit_lengths, target_lengths, valid, blank, reduction, fastemit_lambda,
                delay_penalty):
        batch, frames, labels_plus_one, _ = logits.shape
        labels = labels_plus_one - 1
        log_probs = torch.log_softmax(logits, dim=-1)
        label_ids = targets.long().masked_fill(~valid, blank)
        label_index = label_ids[:, None, :, None].expand(batch, frames, labels, 1)
        blank_lp = log_probs[..., blank].to(torch.float64).contiguous()
        label_lp = log_probs[:, :, :labels, :].gather(3, label_index).squeeze(3).to(torch.float64).contiguous()
        if delay_penalty:
            _penalize_delay(label_lp, logit_lengths, float(delay_penalty))

        loglik = np.zeros(batch)
        softmax_weight = np.zeros((batch, frames, labels_plus_one))
        blank_weight = np.zeros((batch, frames, labels_plus_one))
        label_weight = np.zeros((batch, frames, labels))
        _lattice_weights(blank_lp.numpy(), label_lp.numpy(),
                         logit_lengths.to(torch.int64).numpy(), target_lengths.to(torch.int64).numpy(),
                         float(fastemit_lambda), loglik, softmax_weight, blank_weight, label_weight)

        ctx.reduction = reduction
        ctx.grads = None
        if ctx.needs_input_grad[0]:
            dtype = logits.dtype
            grads = log_probs.exp_().mul_(torch.from_numpy(softmax_weight).to(dtype).unsqueeze(3))
            grads[..., blank].sub_(torch.from_numpy(blank_weight).to(dtype))
            grads[:, :, :labels, :].scatter_add_(3, label_index,
                                                 torch.from_numpy(label_weight).to(dtype).neg_().unsqueeze(3))
            ctx.grads = grads
        del log_probs

        nll = torch.from_numpy(-loglik).to(logits.dtype)
        if reduction == "mean":
            return nll.mean()
        if reduction == "sum":
            return nll.sum()
        return nll

    @staticmethod
    def backward(ctx, grad_output):
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("rnnt_loss gradients are scaled in place and can be backpropagated only once")
        if ctx.reduction == "none":
            grads.mul_(grad_output.to(grads.dtype).view(-1, 1, 1, 1))
        elif ctx.reduction == "mean":
            grads.mul_(grad_output.to(grads.dtype) / grads.shape[0])
        else:
            grads.mul_(grad_output.to(grads.dtype))
        return grads, None, None, None, None, None, None, None, None


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
              target_lengths: torch.Tensor, blank: int = 0, reduction: str = "mean",
              fastemit_lambda: float = 0.0, delay_penalty: float = 0.0) -> torch.Tensor:
    """Transducer negative log-likelihood of `targets` given raw joiner `logits`.

    logits: (B, T, U+1, V) float32 (float64 accepted), unnormalized joiner outputs on the CPU.
    targets: (B, U) int32/int64, padded past `target_lengths`; padding values are ignored.
    logit_lengths: (B,) frames per utterance in [1, T]; target_lengths: (B,) labels in [0, U].
    reduction: "mean" (mean over the batch of per-utterance NLL), "sum", or "none" (shape (B,)).
    fastemit_lambda: FastEmit (Yu et al. 2021): gradients through label emissions are scaled by
        (1 + lambda) while the returned value stays the plain NLL, as in warp-rnnt and NeMo.
    delay_penalty: delay-penalized transducer (Kang et al. 2022, k2's `delay_penalty`): every
        label emission at frame t of an utterance of T frames gains delay_penalty * ((T-1)/2 - t)
        in log space, so a path emitting later by one frame per label loses delay_penalty; the
        returned value and the gradient are those of the penalized lattice.

    Gradients at padded lattice positions are exactly zero. The gradient is held by the graph
    between forward and backward and scaled in place, so the graph can be backpropagated once.
    Raises ValueError naming the offending argument.
    """
    valid = _validate(logits, targets, logit_lengths, target_lengths, blank, reduction, fastemit_lambda,
                      delay_penalty)
    return _RNNTLoss.apply(logits, targets, logit_lengths, target_lengths, valid, blank, reduction, fastemit_lambda,
                           delay_penalty)


class _LatticeNll(torch.autograd.Function):
    """Per-utterance NLL of a lattice given as log-probabilities; also the node occupancies."""

    @staticmethod
    def forward(ctx, blank_lp, label_lp, logit_lengths, target_lengths, fastemit_lambda, delay_penalty):
        batch, frames, labels_plus_one = blank_lp.shape
        blank64 = blank_lp.detach().to(torch.float64).contiguous()
        label64 = label_lp.detach().to(torch.float64).clone()
        if delay_penalty:
            _penalize_delay(label64, logit_lengths, float(delay_penalty))
        loglik = np.zeros(batch)
        occupancy = np.zeros((batch, frames, labels_plus_one))
        blank_weight = np.zeros((batch, frames, labels_plus_one))
        label_weight = np.zeros((batch, frames, labels_plus_one - 1))
        _lattice_weights(blank64.numpy(), label64.numpy(), logit_lengths.to(torch.int64).numpy(),
                         target_lengths.to(torch.int64).numpy(), 0.0, loglik, occupancy, blank_weight, label_weight)
        ctx.save_for_backward(torch.from_numpy(blank_weight).to(blank_lp.dtype).neg_(),
                              torch.from_numpy(label_weight).mul_(-(1.0 + fastemit_lambda)).to(label_lp.dtype))
        occupancy = torch.from_numpy(occupancy)
        ctx.mark_non_differentiable(occupancy)
        return torch.from_numpy(-loglik).to(blank_lp.dtype), occupancy

    @staticmethod
    def backward(ctx, grad_nll, _grad_occupancy):
        blank_grad, label_grad = ctx.saved_tensors
        scale = grad_nll.view(-1, 1, 1)
        return blank_grad * scale, label_grad * scale, None, None, None, None


def lattice_nll(blank_lp: torch.Tensor, label_lp: torch.Tensor, logit_lengths: torch.Tensor,
                target_lengths: torch.Tensor, fastemit_lambda: float = 0.0,
                delay_penalty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Transducer NLL per utterance from the lattice's log-probabilities, for joiners that are
    not one (B, T, U+1, V) tensor (the pruned loss, export/pruned_loss.py).

    blank_lp (B, T, U+1): log P(blank) at node (t, u); label_lp (B, T, U): log P(next target label)
    there; -inf marks a transition that does not exist. Differentiable in both (FastEmit scales
    the label gradients, delay_penalty shifts label_lp, as in rnnt_loss). Also returns the float64
    node occupancies P(the alignment passes node (t, u)), without gradient.
    """
    if blank_lp.dim() != 3 or label_lp.dim() != 3 or blank_lp.shape[:2] != label_lp.shape[:2] \
            or label_lp.shape[2] != blank_lp.shape[2] - 1:
        raise ValueError(f"blank_lp {tuple(blank_lp.shape)} and label_lp {tuple(label_lp.shape)} must be "
                         "(B, T, U+1) and (B, T, U)")
    batch, frames, labels_plus_one = blank_lp.shape
    _validate_lengths(batch, frames, labels_plus_one - 1, logit_lengths, target_lengths)
    _validate_options(fastemit_lambda, delay_penalty)
    return _LatticeNll.apply(blank_lp, label_lp, logit_lengths, target_lengths, float(fastemit_lambda),
                             float(delay_penalty))
