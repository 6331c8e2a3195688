"""VTLP on log-mel features: the identity at factor 1, energy moved where a warped voice puts it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from framegate.engine.features import SAMPLE_RATE, compute_fbank
from framegate.export.frequency_warp import bin_centres_hz, warp_batch, warp_matrix


def _tone_fbank(hz: float) -> np.ndarray:
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    return compute_fbank((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))


def test_factor_one_is_the_identity() -> None:
    np.testing.assert_allclose(warp_matrix(1.0), np.eye(80), atol=1e-9)


@pytest.mark.parametrize("alpha", [0.85, 0.93, 1.07, 1.2])
def test_rows_are_interpolation_weights_so_a_flat_spectrum_stays_flat(alpha: float) -> None:
    m = warp_matrix(alpha)
    assert (m >= 0).all() and (np.count_nonzero(m, axis=1) <= 2).all()
    np.testing.assert_allclose(m.sum(axis=1), 1.0)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_a_warped_tone_looks_like_the_tone_at_the_warped_frequency(alpha: float) -> None:
    """Warping the fbank of a 1 kHz tone by alpha peaks where the fbank of an alpha kHz tone peaks."""
    warped = _tone_fbank(1000.0) @ warp_matrix(alpha).T
    expected = _tone_fbank(1000.0 * alpha)
    peak_warped, peak_expected = warped.mean(axis=0).argmax(), expected.mean(axis=0).argmax()
    assert abs(int(peak_warped) - int(peak_expected)) <= 1
    assert peak_expected != _tone_fbank(1000.0).mean(axis=0).argmax()  # the shift is visible at this factor


def test_the_top_of_the_band_stays_put() -> None:
    """Above the knee the warp bends back to the filterbank's upper edge: the last bin maps to itself."""
    for alpha in (0.9, 1.1):
        assert warp_matrix(alpha)[-1].argmax() == 79
    assert bin_centres_hz()[-1] < SAMPLE_RATE / 2 - 400


def test_batch_draws_one_factor_per_utterance_deterministically_and_keeps_padding_zero() -> None:
    x = torch.zeros(3, 50, 80)
    x[:, :40] = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 40, 80)).astype(np.float32))
    a = warp_batch(x, 0.1, np.random.default_rng(7))
    b = warp_batch(x, 0.1, np.random.default_rng(7))
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.count_nonzero(a[:, 40:]) == 0
    assert not torch.allclose(a, x)
    assert torch.allclose(warp_batch(x, 0.0, np.random.default_rng(7)), x, atol=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), 0.3, 3.0])
def test_unusable_factors_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="warp factor"):
        warp_matrix(bad)


def test_unusable_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="max_warp"):
        warp_batch(torch.zeros(1, 4, 80), 0.6, np.random.default_rng(0))
    with pytest.raises(ValueError, match="bins"):
        warp_batch(torch.zeros(1, 4, 40), 0.1, np.random.default_rng(0))
