"""metrics.similarity: Spearman and SSIM against hand-computed values, scipy, scikit-image and quantus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam.metrics.similarity import average_ranks, spearman, ssim


def test_average_ranks_share_ties():
    ranks = average_ranks(torch.tensor([[3.0, 1.0, 1.0, 2.0, 3.0, 3.0]]))
    assert ranks.tolist() == [[5.0, 1.5, 1.5, 3.0, 5.0, 5.0]]


def test_spearman_hand_computed():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    # no ties: 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60; ties: ranks (1.5, 1.5, 3, 4) vs 1..4
    expected = [0.8, 4.5 / math.sqrt(4.5 * 5.0)]
    torch.testing.assert_close(
        spearman(a, b), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_spearman_equals_scipy_and_is_batch_invariant():
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 9, 9, generator=generator).round(decimals=1)  # many ties
    b = torch.rand(3, 9, 9, generator=generator).round(decimals=1)
    batch = spearman(a, b)
    for i in range(3):
        expected = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy())[0]
        assert batch[i].item() == pytest.approx(expected, abs=1e-12)
        assert spearman(a[i : i + 1], b[i : i + 1])[0].item() == pytest.approx(batch[i].item(), abs=1e-15)


def test_spearman_constant_map_is_nan():
    assert math.isnan(spearman(torch.ones(1, 4, 4), torch.rand(1, 4, 4))[0].item())


def test_ssim_hand_computed():
    a = torch.arange(9.0).reshape(1, 3, 3)
    b = 2 * a
    # one 3x3 window: means 4 and 8, sample variances 60/8 and 240/8, covariance 120/8; range 16
    c1, c2 = (0.01 * 16) ** 2, (0.03 * 16) ** 2
    expected = (2 * 4 * 8 + c1) * (2 * 15 + c2) / ((16 + 64 + c1) * (7.5 + 30 + c2))
    assert ssim(a, b, win_size=3).item() == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a, win_size=3).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_equals_scikit_image():
    from skimage.metrics import structural_similarity

    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 12, 10, generator=generator), torch.rand(2, 12, 10, generator=generator)
    batch = ssim(a, b)
    for i in range(2):
        x, y = a[i].double().numpy(), b[i].double().numpy()
        span = max(x.max(), y.max()) - min(x.min(), y.min())
        expected = structural_similarity(x, y, data_range=span)
        assert batch[i].item() == pytest.approx(expected, abs=1e-12)


def test_ssim_and_spearman_equal_quantus():
    import quantus  # in the test extra (setup.py)

    generator = torch.Generator().manual_seed(2)
    a, b = torch.rand(3, 16, 16, generator=generator), torch.rand(3, 16, 16, generator=generator)
    expected_ssim = quantus.similarity_func.ssim(a.double().numpy(), b.double().numpy(), batched=True)
    torch.testing.assert_close(
        ssim(a, b), torch.tensor(expected_ssim, dtype=torch.float64), rtol=0, atol=1e-12
    )
    expected_rho = quantus.similarity_func.correlation_spearman(
        a.flatten(1).numpy(), b.flatten(1).numpy(), batched=True
    )
    torch.testing.assert_close(spearman(a, b), torch.tensor(np.asarray(expected_rho)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad", [2, 4, 1.0])
def test_ssim_rejects_a_bad_window(bad):
    with pytest.raises(ValueError, match="win_size"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8), win_size=bad)


def test_ssim_rejects_small_maps_and_mismatched_shapes():
    with pytest.raises(ValueError, match="smaller than win_size"):
        ssim(torch.rand(1, 5, 8), torch.rand(1, 5, 8))
    with pytest.raises(ValueError, match="one shape"):
        spearman(torch.rand(1, 5, 8), torch.rand(1, 8, 5))
