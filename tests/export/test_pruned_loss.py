"""The pruned transducer loss: its lattice against rnnt_loss and a brute force over the
windowed alignments, its windows' guarantees, and its simple joiner against the explicit sum."""

import itertools

import numpy as np
import pytest
import torch

from framegate.export.loss import lattice_nll, rnnt_loss
from framegate.export.models.lstm_transducer import Joiner, LstmTransducerConfig
from framegate.export.pruned_loss import SimpleJoiner, batch_s_range, pruned_rnnt_loss, window_starts
BLANK = 0


def _targets(batch, frames, labels, vocab, seed):
    """Padded targets (-1 past each length) and lengths; utterance 0 fills the padded shape."""
    gen = torch.Generator().manual_seed(seed)
    targets = torch.randint(1, vocab, (batch, labels), generator=gen)
    logit_lengths = torch.randint(1, frames + 1, (batch,), generator=gen)
    target_lengths = torch.randint(0, labels + 1, (batch,), generator=gen)
    logit_lengths[0], target_lengths[0] = frames, labels
    for b in range(batch):
        targets[b, target_lengths[b]:] = -1
    return targets, logit_lengths, target_lengths


def _lattice_from_logits(logits, targets, target_lengths):
    lp = logits.double().log_softmax(-1)
    labels = targets.shape[1]
    ids = targets.long().clamp(min=0).masked_fill(torch.arange(labels) >= target_lengths[:, None], BLANK)
    label_lp = lp[:, :, :labels].gather(3, ids[:, None, :, None].expand(-1, lp.shape[1], -1, 1)).squeeze(3)
    return lp[..., BLANK], label_lp


@pytest.mark.parametrize("fastemit, delay", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.3), (0.2, 0.1)])
def test_lattice_nll_equals_rnnt_loss_in_value_and_gradient(fastemit, delay):
    targets, logit_lengths, target_lengths = _targets(4, 5, 3, 6, seed=3)
    logits = 3.0 * torch.randn(4, 5, 4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected_leaf = logits.clone().requires_grad_()
    expected = rnnt_loss(expected_leaf, targets, logit_lengths, target_lengths, reduction="none",
                         fastemit_lambda=fastemit, delay_penalty=delay)
    expected.sum().backward()
    leaf = logits.clone().requires_grad_()
    nll, occupancy = lattice_nll(*_lattice_from_logits(leaf, targets, target_lengths), logit_lengths, target_lengths,
                                 fastemit, delay)
    nll.sum().backward()
    torch.testing.assert_close(nll, expected.detach(), rtol=0, atol=1e-9)
    torch.testing.assert_close(leaf.grad, expected_leaf.grad, rtol=0, atol=1e-9)
    visited = (logit_lengths + target_lengths).to(torch.float64)  # every alignment visits T + U nodes
    torch.testing.assert_close(occupancy.sum((1, 2)), visited)


def test_simple_joiner_equals_the_explicit_normalized_sum():
    torch.manual_seed(0)
    simple = SimpleJoiner(8, 7).double()
    enc, dec = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 4, 8, dtype=torch.float64)
    ids = torch.tensor([[1, 2, 6], [5, 3, BLANK]])
    blank_lp, label_lp = simple(enc, dec, ids, BLANK)
    explicit = (simple.am(enc).unsqueeze(2) + simple.lm(dec).unsqueeze(1)).log_softmax(-1)
    torch.testing.assert_close(blank_lp, explicit[..., BLANK])
    expected = explicit[:, :, :3].gather(3, ids[:, None, :, None].expand(-1, 5, -1, 1)).squeeze(3)
    torch.testing.assert_close(label_lp, expected)


def _check_windows(starts, frames, labels, s_range):
    last = max(labels + 1 - s_range, 0)
    s = starts[:frames].tolist()
    assert s[0] == 0 and s[-1] == last
    assert all(0 <= v <= last for v in s)
    assert all(0 <= b - a <= s_range - 1 for a, b in zip(s, s[1:]))


@pytest.mark.parametrize("seed", range(30))
def test_windows_start_at_zero_end_at_the_last_label_and_always_leave_a_path(seed):
    rng = np.random.default_rng(seed)
    batch, frames = 3, int(rng.integers(1, 12))
    logit_lengths = torch.tensor(rng.integers(1, frames + 1, batch))
    logit_lengths[0] = frames
    target_lengths = torch.tensor([int(rng.integers(0, 3 * int(t) + 1)) for t in logit_lengths])
    s_range = batch_s_range(int(rng.integers(1, 5)), logit_lengths, target_lengths)
    occupancy = torch.from_numpy(rng.random((batch, frames, int(target_lengths.max()) + 1)) ** 8)
    starts = window_starts(occupancy, logit_lengths, target_lengths, s_range)
    for b in range(batch):
        _check_windows(starts[b], int(logit_lengths[b]), int(target_lengths[b]), s_range)
        assert int(starts[b].max()) + s_range - 1 <= int(target_lengths.max())  # gathers stay in the batch


def test_batch_s_range_widens_to_leave_a_path_and_caps_at_all_labels():
    assert batch_s_range(3, torch.tensor([10, 2]), torch.tensor([4, 9])) == 6  # 2 frames, 9 labels: 5 a frame
    assert batch_s_range(3, torch.tensor([10]), torch.tensor([1])) == 2
    assert batch_s_range(3, torch.tensor([10]), torch.tensor([0])) == 1


def test_windows_follow_a_certain_alignment():
    """With all occupancy on one path, every frame's window holds that path's nodes."""
    path_u = [0, 0, 2, 3, 3, 6, 6, 7]  # label position at frames 0..7, 7 labels
    occupancy = torch.zeros(1, 8, 8, dtype=torch.float64)
    for t, u in enumerate(path_u):
        occupancy[0, t, u] = 1.0
    starts = window_starts(occupancy, torch.tensor([8]), torch.tensor([7]), 4)
    for t, u in enumerate(path_u):
        assert starts[0, t] <= u < starts[0, t] + 4


def _windowed_brute_force(logits, targets, n_t, n_u, starts, width):
    """-log of the sum over alignments whose every node (t, u) lies in frame t's window."""
    lp = logits[:n_t, :n_u + 1].double().log_softmax(-1)
    paths = []
    for label_moves in itertools.combinations(range(n_t + n_u - 1), n_u):
        t = u = 0
        terms = []
        for move in range(n_t + n_u - 1):
            if not starts[t] <= u < starts[t] + width:
                break
            if move in label_moves:
                terms.append(lp[t, u, targets[u]])
                u += 1
            else:
                terms.append(lp[t, u, BLANK])
                t += 1
        else:
            if starts[t] <= u < starts[t] + width:
                terms.append(lp[n_t - 1, n_u, BLANK])
                paths.append(torch.stack(terms).sum())
    return -torch.logsumexp(torch.stack(paths), 0)


def _models(vocab, dim=6, seed=0):
    torch.manual_seed(seed)
    cfg = LstmTransducerConfig(vocab_size=vocab, joiner_dim=dim, decoder_dim=dim)
    return Joiner(cfg).double(), SimpleJoiner(dim, vocab).double()


def _inputs(batch, frames, labels, vocab, seed):
    targets, logit_lengths, target_lengths = _targets(batch, frames, labels, vocab, seed)
    gen = torch.Generator().manual_seed(seed)
    enc = torch.randn(batch, frames, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    dec = torch.randn(batch, labels + 1, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    return enc, dec, targets, logit_lengths, target_lengths


def test_windows_covering_every_label_give_the_full_loss_and_its_gradients():
    joiner, simple = _models(vocab=5)
    enc, dec, targets, logit_lengths, target_lengths = _inputs(3, 4, 3, 5, seed=2)
    pruned, _ = pruned_rnnt_loss(enc, dec, joiner, simple, targets, logit_lengths, target_lengths, s_range=4)
    pruned_grads = torch.autograd.grad(pruned, [enc, dec, *joiner.parameters()])
    full = rnnt_loss(joiner(enc.unsqueeze(2), dec.unsqueeze(1)), targets, logit_lengths, target_lengths)
    full_grads = torch.autograd.grad(full, [enc, dec, *joiner.parameters()])
    torch.testing.assert_close(pruned, full, rtol=0, atol=1e-9)
    for got, expected in zip(pruned_grads, full_grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_a_token_penalty_is_the_full_losss_logit_penalty_where_windows_cover_every_label():
    joiner, simple = _models(vocab=5)
    enc, dec, targets, logit_lengths, target_lengths = _inputs(3, 4, 3, 5, seed=4)
    penalty = torch.rand(3, 4, 4, dtype=torch.float64) * 2
    pruned, _ = pruned_rnnt_loss(enc, dec, joiner, simple, targets, logit_lengths, target_lengths, s_range=4,
                                 token_penalty=(3, penalty))
    pruned_grads = torch.autograd.grad(pruned, [enc, dec])
    logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1)).clone()
    logits[..., 3] -= penalty
    full = rnnt_loss(logits, targets, logit_lengths, target_lengths)
    torch.testing.assert_close(pruned, full, rtol=0, atol=1e-9)
    for got, expected in zip(pruned_grads, torch.autograd.grad(full, [enc, dec])):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
    unpenalized, _ = pruned_rnnt_loss(enc, dec, joiner, simple, targets, logit_lengths, target_lengths, s_range=4)
    assert abs(float((unpenalized - pruned).detach())) > 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_narrow_windows_give_the_sum_over_the_windowed_alignments(seed):
    joiner, simple = _models(vocab=6, seed=seed)
    enc, dec, targets, logit_lengths, target_lengths = _inputs(3, 5, 5, 6, seed=10 + seed)
    pruned, simple_nll = pruned_rnnt_loss(enc, dec, joiner, simple, targets, logit_lengths, target_lengths,
                                          s_range=2)
    width = batch_s_range(2, logit_lengths, target_lengths)
    assert width < int(target_lengths.max()) + 1  # really pruned
    label_ids = targets.clamp(min=0).masked_fill(torch.arange(5) >= target_lengths[:, None], BLANK)
    _, occupancy = lattice_nll(*simple(enc, dec, label_ids, BLANK), logit_lengths, target_lengths)
    starts = window_starts(occupancy, logit_lengths, target_lengths, width)
    logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))
    expected = torch.stack([_windowed_brute_force(logits[b], targets[b], int(logit_lengths[b]),
                                                  int(target_lengths[b]), starts[b].tolist(), width)
                            for b in range(3)]).mean()
    torch.testing.assert_close(pruned, expected, rtol=0, atol=1e-9)
    expected_grads = torch.autograd.grad(expected, [enc, dec], retain_graph=True)
    for got, want in zip(torch.autograd.grad(pruned, [enc, dec], retain_graph=True), expected_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    assert pruned >= rnnt_loss(logits, targets, logit_lengths, target_lengths) - 1e-9  # fewer paths
    simple_grad = torch.autograd.grad(simple_nll, simple.am.weight)[0]
    assert torch.isfinite(simple_grad).all() and simple_grad.abs().sum() > 0


def test_empty_transcripts_and_float32_work():
    joiner, simple = _models(vocab=5)
    joiner, simple = joiner.float(), simple.float()
    enc = torch.randn(2, 6, 6, requires_grad=True)
    dec = torch.randn(2, 1, 6, requires_grad=True)
    targets = torch.zeros(2, 0, dtype=torch.int64)
    pruned, simple_nll = pruned_rnnt_loss(enc, dec, joiner, simple, targets, torch.tensor([6, 3]),
                                          torch.tensor([0, 0]), s_range=3)
    full = rnnt_loss(joiner(enc.unsqueeze(2), dec.unsqueeze(1)), targets, torch.tensor([6, 3]), torch.tensor([0, 0]))
    torch.testing.assert_close(pruned, full)
    (pruned + simple_nll).backward()
    assert torch.isfinite(enc.grad).all() and enc.grad.abs().sum() > 0


@pytest.mark.parametrize("change, name", [(dict(s_range=0), "s_range"), (dict(enc=torch.zeros(2, 4, 5)), "enc"),
                                          (dict(targets=torch.zeros(2, 3, dtype=torch.int64)), "targets"),
                                          (dict(logit_lengths=torch.tensor([5, 1])), "logit_lengths")])
def test_bad_arguments_raise_value_error_naming_them(change, name):
    joiner, simple = _models(vocab=5)
    enc, dec, targets, logit_lengths, target_lengths = _inputs(2, 4, 3, 5, seed=1)
    args = dict(enc=enc, dec=dec, joiner=joiner, simple=simple, targets=targets, logit_lengths=logit_lengths,
                target_lengths=target_lengths, s_range=2)
    args.update(change)
    with pytest.raises(ValueError, match=name):
        pruned_rnnt_loss(**args)
