"""rnnt_loss against an independent brute-force sum over every alignment path."""

import itertools

import pytest
import torch

from framegate.export.loss import rnnt_loss

BLANK = 0
# (batch, max frames T, max labels U, vocab V)
TINY_CASES = [(1, 1, 0, 2), (1, 1, 3, 5), (2, 3, 2, 3), (3, 4, 3, 5), (4, 4, 2, 4)]


def make_batch(batch, frames, labels, vocab, seed, dtype=torch.float32):
    """Random logits and padded targets; utterance 0 fills the padded shape, the rest are shorter."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(batch, frames, labels + 1, vocab, generator=gen, dtype=dtype)
    targets = torch.randint(1, vocab, (batch, labels), generator=gen)
    logit_lengths = torch.randint(1, frames + 1, (batch,), generator=gen)
    target_lengths = torch.randint(0, labels + 1, (batch,), generator=gen)
    logit_lengths[0], target_lengths[0] = frames, labels
    for b in range(batch):
        targets[b, target_lengths[b]:] = -1  # padding that must never be read
    return logits, targets, logit_lengths, target_lengths


def brute_force_nll(logits, targets, logit_lengths, target_lengths, label_grad_scale=1.0, delay_penalty=0.0):
    """Per-utterance NLL as -logsumexp over all alignments, in float64 autograd-able torch.

    Each alignment is T blanks and U labels with a blank last; the label log-probs enter with
    value unchanged but gradient scaled by label_grad_scale (the FastEmit surrogate), and a label
    emitted at frame t of T gains delay_penalty * ((T - 1) / 2 - t).
    """
    nlls = []
    for b in range(logits.shape[0]):
        n_t, n_u = int(logit_lengths[b]), int(target_lengths[b])
        lp = logits[b, :n_t, :n_u + 1].double().log_softmax(-1)
        path_lps = []
        for label_moves in itertools.combinations(range(n_t + n_u - 1), n_u):
            t = u = 0
            terms = []
            for move in range(n_t + n_u - 1):
                if move in label_moves:
                    label_lp = lp[t, u, targets[b, u]]
                    terms.append(label_grad_scale * label_lp - (label_grad_scale - 1.0) * label_lp.detach()
                                 + delay_penalty * ((n_t - 1) / 2 - t))
                    u += 1
                else:
                    terms.append(lp[t, u, BLANK])
                    t += 1
            terms.append(lp[n_t - 1, n_u, BLANK])
            path_lps.append(torch.stack(terms).sum())
        nlls.append(-torch.logsumexp(torch.stack(path_lps), 0))
    return torch.stack(nlls)


def brute_force_grad(logits, targets, logit_lengths, target_lengths, label_grad_scale=1.0, delay_penalty=0.0):
    leaf = logits.double().requires_grad_()
    brute_force_nll(leaf, targets, logit_lengths, target_lengths, label_grad_scale, delay_penalty).sum().backward()
    return leaf.grad


def loss_and_grad(logits, targets, logit_lengths, target_lengths, **kwargs):
    leaf = logits.clone().requires_grad_()
    loss = rnnt_loss(leaf, targets, logit_lengths, target_lengths, blank=BLANK, **kwargs)
    loss.sum().backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("seed", range(len(TINY_CASES)))
def test_loss_equals_brute_force_over_all_alignments(seed):
    batch = make_batch(*TINY_CASES[seed], seed=seed)
    loss = rnnt_loss(*batch, blank=BLANK, reduction="none")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), brute_force_nll(*batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(len(TINY_CASES)))
def test_grad_equals_autograd_through_brute_force_and_is_zero_when_padded(seed):
    batch = make_batch(*TINY_CASES[seed], seed=seed)
    _, grad = loss_and_grad(*batch, reduction="sum")
    expected = brute_force_grad(*batch)
    torch.testing.assert_close(grad.double(), expected, rtol=0, atol=1e-5)
    logits, _, logit_lengths, target_lengths = batch
    for b in range(logits.shape[0]):
        assert torch.all(grad[b, logit_lengths[b]:] == 0)
        assert torch.all(grad[b, :, target_lengths[b] + 1:] == 0)


def test_reductions_agree_and_batch_equals_per_utterance_losses():
    batch = make_batch(4, 4, 3, 5, seed=11)
    logits, targets, logit_lengths, target_lengths = batch
    per_utt = rnnt_loss(*batch, reduction="none")
    assert per_utt.shape == (4,)
    torch.testing.assert_close(rnnt_loss(*batch, reduction="sum"), per_utt.sum())
    torch.testing.assert_close(rnnt_loss(*batch, reduction="mean"), per_utt.mean())
    torch.testing.assert_close(rnnt_loss(*batch), per_utt.mean())

    _, batch_grad = loss_and_grad(*batch, reduction="mean")
    for b in range(4):
        n_t, n_u = int(logit_lengths[b]), int(target_lengths[b])
        alone = (logits[b:b + 1, :n_t, :n_u + 1], targets[b:b + 1, :n_u],
                 logit_lengths[b:b + 1], target_lengths[b:b + 1])
        alone_loss, alone_grad = loss_and_grad(*alone, reduction="sum")
        torch.testing.assert_close(alone_loss[()], per_utt[b])
        torch.testing.assert_close(batch_grad[b, :n_t, :n_u + 1], alone_grad[0] / 4)


def test_fastemit_zero_lambda_equals_plain_loss():
    batch = make_batch(3, 4, 3, 5, seed=5)
    plain_loss, plain_grad = loss_and_grad(*batch, reduction="none")
    fe_loss, fe_grad = loss_and_grad(*batch, reduction="none", fastemit_lambda=0.0)
    assert torch.equal(plain_loss, fe_loss)
    assert torch.equal(plain_grad, fe_grad)


def test_fastemit_keeps_loss_value_and_scales_label_emission_grads_by_one_plus_lambda():
    # FastEmit's gradient is that of -log P with every label log-prob's gradient scaled by
    # (1 + lambda), chained through log-softmax; brute_force_nll builds exactly that surrogate.
    lam = 0.5
    batch = make_batch(3, 4, 3, 5, seed=7)
    plain_loss, plain_grad = loss_and_grad(*batch, reduction="none")
    fe_loss, fe_grad = loss_and_grad(*batch, reduction="none", fastemit_lambda=lam)
    torch.testing.assert_close(fe_loss, plain_loss, rtol=0, atol=0)
    expected = brute_force_grad(*batch, label_grad_scale=1.0 + lam)
    torch.testing.assert_close(fe_grad.double(), expected, rtol=0, atol=1e-5)
    assert (fe_grad - plain_grad).abs().max() > 1e-2


@pytest.mark.parametrize("seed", range(len(TINY_CASES)))
def test_delay_penalty_loss_and_grad_equal_the_penalized_brute_force(seed):
    batch = make_batch(*TINY_CASES[seed], seed=seed)
    loss, grad = loss_and_grad(*batch, reduction="none", delay_penalty=0.3)
    torch.testing.assert_close(loss.double(), brute_force_nll(*batch, delay_penalty=0.3), rtol=0, atol=1e-5)
    torch.testing.assert_close(grad.double(), brute_force_grad(*batch, delay_penalty=0.3), rtol=0, atol=1e-5)


def mean_emission_frame(logits, targets, n_u):
    """Expected frame of a label emission under the plain lattice's path posterior (batch of one)."""
    lp = logits[0].double().log_softmax(-1)
    n_t = lp.shape[0]
    scores, frames = [], []
    for label_moves in itertools.combinations(range(n_t + n_u - 1), n_u):
        t = u = 0
        score, emitted = lp[n_t - 1, n_u, BLANK], []
        for move in range(n_t + n_u - 1):
            if move in label_moves:
                score, u = score + lp[t, u, targets[0, u]], u + 1
                emitted.append(t)
            else:
                score, t = score + lp[t, u, BLANK], t + 1
        scores.append(score)
        frames.append(sum(emitted) / n_u)
    return float((torch.stack(scores).softmax(0) * torch.tensor(frames, dtype=torch.float64)).sum())


def test_delay_penalty_training_moves_emissions_to_earlier_frames():
    _, targets, logit_lengths, target_lengths = make_batch(1, 6, 2, 4, seed=3)
    logits = torch.zeros(1, 6, 3, 4)  # uniform start: plain training spreads emissions over the frames

    def trained(delay_penalty):
        leaf = logits.clone().requires_grad_()
        opt = torch.optim.SGD([leaf], lr=0.5)
        for _ in range(30):
            opt.zero_grad()
            rnnt_loss(leaf, targets, logit_lengths, target_lengths, delay_penalty=delay_penalty).backward()
            opt.step()
        return leaf.detach()

    plain, penalized = trained(0.0), trained(0.5)
    assert mean_emission_frame(penalized, targets, 2) < mean_emission_frame(plain, targets, 2) - 1.0


def test_large_batch_is_finite_and_matches_finite_differences():
    batch, frames, labels, vocab = 4, 100, 30, 256
    logits, targets, logit_lengths, target_lengths = make_batch(batch, frames, labels, vocab, seed=3)
    logit_lengths = torch.tensor([100, 80, 63, 100])
    target_lengths = torch.tensor([30, 12, 30, 0])
    targets = torch.randint(1, vocab, (batch, labels), generator=torch.Generator().manual_seed(4))
    args = (targets, logit_lengths, target_lengths)

    loss32, grad32 = loss_and_grad(logits, *args, reduction="none")
    assert torch.isfinite(loss32).all() and torch.isfinite(grad32).all()

    logits64 = logits.double()
    _, grad = loss_and_grad(logits64, *args, reduction="sum")
    torch.testing.assert_close(grad32.double(), grad, rtol=0, atol=1e-4)
    gen = torch.Generator().manual_seed(9)
    largest = grad.abs().flatten().topk(4).indices.tolist()
    random = [torch.randint(0, grad.numel(), (1,), generator=gen).item() for _ in range(4)]
    eps = 1e-6
    for flat in largest + random:
        index = torch.unravel_index(torch.tensor(flat), grad.shape)
        plus, minus = logits64.clone(), logits64.clone()
        plus[index] += eps
        minus[index] -= eps
        numeric = (rnnt_loss(plus, *args, reduction="sum") - rnnt_loss(minus, *args, reduction="sum")) / (2 * eps)
        assert abs(numeric.item() - grad[index].item()) < 1e-6, (index, numeric.item(), grad[index].item())


def test_second_backward_through_the_same_graph_raises():
    leaf = make_batch(2, 3, 2, 4, seed=1)[0].requires_grad_()
    loss = rnnt_loss(leaf, *make_batch(2, 3, 2, 4, seed=1)[1:])
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def _replace(position, value):
    def edit(args):
        args = list(args)
        args[position] = value(args) if callable(value) else value
        return args
    return edit


BAD_ARGUMENTS = {
    "logits-rank": ("logits", _replace(0, lambda a: a[0][0])),
    "logits-dtype": ("logits", _replace(0, lambda a: a[0].half())),
    "targets-dtype": ("targets", _replace(1, lambda a: a[1].float())),
    "targets-shape": ("targets", _replace(1, lambda a: a[1][:, :1])),
    "targets-blank": ("targets", _replace(1, lambda a: torch.zeros_like(a[1]))),
    "targets-out-of-vocab": ("targets", _replace(1, lambda a: torch.full_like(a[1], 5))),
    "logit_lengths-zero": ("logit_lengths", _replace(2, torch.tensor([0, 3]))),
    "logit_lengths-too-long": ("logit_lengths", _replace(2, torch.tensor([4, 3]))),
    "logit_lengths-shape": ("logit_lengths", _replace(2, torch.tensor([3]))),
    "target_lengths-too-long": ("target_lengths", _replace(3, torch.tensor([3, 1]))),
    "target_lengths-negative": ("target_lengths", _replace(3, torch.tensor([2, -1]))),
    "target_lengths-dtype": ("target_lengths", _replace(3, torch.tensor([2.0, 1.0]))),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_tensor_arguments_raise_value_error_naming_them(case):
    name, edit = BAD_ARGUMENTS[case]
    logits = torch.randn(2, 3, 3, 5)
    args = (logits, torch.tensor([[1, 2], [3, 0]]), torch.tensor([3, 2]), torch.tensor([2, 1]))
    with pytest.raises(ValueError, match=name):
        rnnt_loss(*edit(args))


@pytest.mark.parametrize("name, value", [("blank", 5), ("blank", -1), ("reduction", "avg"),
                                         ("fastemit_lambda", -0.1), ("fastemit_lambda", float("nan")),
                                         ("delay_penalty", -0.1), ("delay_penalty", float("inf"))])
def test_bad_options_raise_value_error_naming_them(name, value):
    args = (torch.randn(2, 3, 3, 5), torch.tensor([[1, 2], [3, 0]]), torch.tensor([3, 2]), torch.tensor([2, 1]))
    with pytest.raises(ValueError, match=name):
        rnnt_loss(*args, **{name: value})
