"""ROAD: the noisy linear imputer against a hand-built dense solve, and hand-computed ROAD scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam.metrics.road import (
    NoisyLinearImputer,
    ROADCombined,
    ROADLeastRelevantFirst,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirst,
    ROADMostRelevantFirstAverage,
    linear_imputation_system,
    neighbors_weights,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget


def dense_imputation(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The definition, pixel by pixel: each removed pixel is the weighted mean of its in-image
    neighbours; one dense equation per removed pixel, solved in float64."""
    channels, height, width = image.shape
    removed = [(r, c) for r in range(height) for c in range(width) if not keep[r, c]]
    index = {pixel: i for i, pixel in enumerate(removed)}
    matrix = torch.zeros(len(removed), len(removed), dtype=torch.float64)
    rhs = torch.zeros(len(removed), channels, dtype=torch.float64)
    for i, (r, c) in enumerate(removed):
        for (dy, dx), weight in neighbors_weights:
            rr, cc = r + dy, c + dx
            if 0 <= rr < height and 0 <= cc < width:
                matrix[i, i] += weight
                if keep[rr, cc]:
                    rhs[i] += weight * image[:, rr, cc].double()
                else:
                    matrix[i, index[(rr, cc)]] -= weight
    values = torch.linalg.solve(matrix, rhs)
    out = image.clone().double()
    for i, (r, c) in enumerate(removed):
        out[:, r, c] = values[i]
    return out.float()


def test_one_removed_pixel_is_the_weighted_mean_of_its_neighbours():
    image = torch.arange(1.0, 10.0).view(1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    keep = torch.ones(3, 3)
    keep[1, 1] = 0
    out = NoisyLinearImputer(noise=0)(image, keep)
    # direct neighbours 2, 4, 6, 8 weigh 1/6, diagonals 1, 3, 7, 9 weigh 1/12: (20/6 + 20/12) = 5
    assert float(out[0, 1, 1]) == pytest.approx(5.0, abs=1e-6)
    keep = torch.ones(3, 3)
    keep[0, 0] = 0
    out = NoisyLinearImputer(noise=0)(image, keep)
    # the corner has 2 (1/6), 4 (1/6), 5 (1/12) inside the image: (2/6 + 4/6 + 5/12) / (5/12) = 3.4
    assert float(out[0, 0, 0]) == pytest.approx(3.4, abs=1e-6)
    torch.testing.assert_close(out.view(-1)[1:], image.view(-1)[1:], rtol=0, atol=0)


def test_two_adjacent_removed_pixels_are_solved_jointly():
    # 1 x 4 image [a, ?, ?, d]: the neighbours are only left/right (1/6 each):
    # u = (a + v) / 2, v = (u + d) / 2  =>  u = (2a + d) / 3, v = (a + 2d) / 3
    image = torch.tensor([[[3.0, 0.0, 0.0, 9.0]]])
    keep = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    out = NoisyLinearImputer(noise=0)(image, keep)
    torch.testing.assert_close(out, torch.tensor([[[3.0, 5.0, 7.0, 9.0]]]))


def test_custom_weighting_is_used():
    # left/right neighbours only: each row is imputed on its own
    horizontal = [((0, 1), 0.5), ((0, -1), 0.5)]
    image = torch.tensor([[[3.0, 0.0, 0.0, 9.0], [1.0, 0.0, 0.0, 1.0]]])
    keep = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    out = NoisyLinearImputer(noise=0, weighting=horizontal)(image, keep)
    torch.testing.assert_close(out, torch.tensor([[[3.0, 5.0, 7.0, 9.0], [1.0, 1.0, 1.0, 1.0]]]))
    assert not torch.allclose(NoisyLinearImputer(noise=0)(image, keep), out)  # the 8 neighbours mix rows
    keep[1] = 0  # a removed row no kept pixel reaches through left/right steps
    with pytest.raises(ValueError, match="singular"):
        NoisyLinearImputer(noise=0, weighting=horizontal)(image, keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_imputer_equals_a_dense_solve_of_the_definition(seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(3, 6, 7, generator=generator)
    keep = torch.rand(6, 7, generator=generator) < 0.4
    keep[0, 0] = True
    out = NoisyLinearImputer(noise=0)(image, keep.float())
    torch.testing.assert_close(out, dense_imputation(image, keep), rtol=0, atol=2e-6)
    torch.testing.assert_close(out[:, keep], image[:, keep], rtol=0, atol=0)


def test_the_sparse_system_equals_the_dense_one():
    generator = torch.Generator().manual_seed(4)
    image = torch.randn(2, 5, 5, generator=generator)
    keep = torch.rand(5, 5, generator=generator) < 0.5
    removed, indices, values, rhs = linear_imputation_system(keep, image)
    matrix = torch.sparse_coo_tensor(
        indices, values, (removed.numel(),) * 2, check_invariants=True
    ).to_dense()
    torch.testing.assert_close(matrix, matrix.T)  # symmetric weights: a symmetric system
    assert bool((torch.linalg.eigvalsh(matrix) > 0).all())  # positive definite
    solution = torch.linalg.solve(matrix, rhs)
    torch.testing.assert_close(solution.float().T, dense_imputation(image, keep).view(2, -1)[:, removed])


def test_edge_cases_nothing_or_everything_removed():
    image = torch.randn(2, 4, 4)
    torch.testing.assert_close(NoisyLinearImputer(noise=0)(image, torch.ones(4, 4)), image, rtol=0, atol=0)
    # no kept pixel: the system is singular; its minimum-norm solution is 0
    torch.testing.assert_close(NoisyLinearImputer(noise=0)(image, torch.zeros(4, 4)), torch.zeros(2, 4, 4))


def test_noise_is_seeded_and_only_on_removed_pixels():
    image = torch.randn(3, 20, 20, generator=torch.Generator().manual_seed(0))
    keep = torch.ones(20, 20)
    keep[5:15, 5:15] = 0
    clean = NoisyLinearImputer(noise=0)(image, keep)
    first = NoisyLinearImputer(noise=0.5, generator=torch.Generator().manual_seed(7))(image, keep)
    second = NoisyLinearImputer(noise=0.5, generator=torch.Generator().manual_seed(7))(image, keep)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first[:, keep.bool()], image[:, keep.bool()], rtol=0, atol=0)
    noise = (first - clean)[:, ~keep.bool()]
    assert 0.4 < float(noise.std()) < 0.6 and abs(float(noise.mean())) < 0.1


def test_imputer_keeps_dtype_and_rejects_bad_input():
    image = torch.randn(1, 4, 4, dtype=torch.float64)
    keep = torch.ones(4, 4)
    keep[1, 2] = 0
    assert NoisyLinearImputer()(image, keep).dtype == torch.float64
    with pytest.raises(ValueError, match=r"one 2-D image \(C, H, W\)"):
        NoisyLinearImputer()(torch.zeros(1, 2, 4, 4), torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="mask must be an"):
        NoisyLinearImputer()(image, torch.ones(4, 5))
    with pytest.raises(ValueError, match="noise"):
        NoisyLinearImputer(noise=-1)
    with pytest.raises(TypeError, match="weighting"):
        NoisyLinearImputer(weighting=[(1, 0.5)])


# -- ROAD scores on a model whose answer is known -------------------------------------------------

#: The informative region of a 4x4 image (its top-left 2x2 block) and a CAM that ranks it first
#: (all 16 values distinct).
REGION = torch.zeros(4, 4)
REGION[:2, :2] = 1
GOOD_CAM = REGION * 0.5 + torch.arange(16.0).view(4, 4) / 32


@pytest.fixture
def case(region_net):
    """Region pixels 5 (logit 0 = 20), the others 0: removing the region imputes it from zeros."""
    return region_net(REGION), (REGION * 5)[None, None]


def test_road_single_percentile_hand_numbers(case):
    model, x = case
    target = [ClassifierOutputTarget(0)]
    good, inverse = GOOD_CAM[None], (1 - GOOD_CAM)[None]
    # MoRF(75) removes the 4 top pixels: for the good CAM the region (imputed from 0s: logit 0),
    # for its inverse 4 pixels outside (the logit is untouched).
    np.testing.assert_array_equal(ROADMostRelevantFirst(75, noise=0)(x, good, target, model), [-20.0])
    np.testing.assert_array_equal(ROADMostRelevantFirst(75, noise=0)(x, inverse, target, model), [0.0])
    # LeRF(25) keeps only the top 4: the region for the good CAM, 4 zeros for the inverse (then
    # every kept pixel is 0 and so is the imputed region).
    np.testing.assert_array_equal(ROADLeastRelevantFirst(25, noise=0)(x, good, target, model), [0.0])
    np.testing.assert_array_equal(ROADLeastRelevantFirst(25, noise=0)(x, inverse, target, model), [-20.0])
    # combined at 75: (LeRF - MoRF) / 2
    np.testing.assert_array_equal(ROADCombined([75], noise=0)(x, good, target, model), [10.0])
    np.testing.assert_array_equal(ROADCombined([75], noise=0)(x, inverse, target, model), [-10.0])


def test_road_ranks_the_region_cam_above_its_inverse(case):
    model, x = case
    target = [ClassifierOutputSoftmaxTarget(0)]
    good, inverse = GOOD_CAM[None], (1 - GOOD_CAM)[None]
    for noise in (0.0, 0.01):
        combined = ROADCombined(noise=noise, generator=torch.Generator().manual_seed(0))
        assert combined(x, good, target, model)[0] > 0.2 > -0.2 > combined(x, inverse, target, model)[0]
        morf = ROADMostRelevantFirstAverage(noise=noise)
        lerf = ROADLeastRelevantFirstAverage(noise=noise)
        assert morf(x, good, target, model)[0] < morf(x, inverse, target, model)[0]
        assert lerf(x, good, target, model)[0] > lerf(x, inverse, target, model)[0]


def test_combined_is_half_the_difference_of_the_averages(small_cnn, images):
    x = images(2, size=12)
    cams = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(5))
    targets = [ClassifierOutputSoftmaxTarget(k) for k in (1, 2)]
    percentiles = [20, 50, 80]
    lerf = ROADLeastRelevantFirstAverage(percentiles, noise=0)(x, cams, targets, small_cnn)
    morf = ROADMostRelevantFirstAverage(percentiles, noise=0)(x, cams, targets, small_cnn)
    combined = ROADCombined(percentiles, noise=0)(x, cams, targets, small_cnn)
    np.testing.assert_allclose(combined, (lerf - morf) / 2, atol=1e-7)
    singles = np.mean(
        [ROADMostRelevantFirst(p, noise=0)(x, cams, targets, small_cnn) for p in percentiles], 0
    )
    np.testing.assert_allclose(morf, singles, atol=1e-7)
    # one MoRF score by hand: the imputed image through the model
    keep = torch.from_numpy(cams[0].numpy() < np.percentile(cams[0].numpy(), 50))
    imputed = dense_imputation(x[0], keep)
    with torch.no_grad():
        after = torch.softmax(small_cnn(imputed[None]), -1)[0, 1]
        before = torch.softmax(small_cnn(x[:1]), -1)[0, 1]
    got = ROADMostRelevantFirst(50, noise=0)(x, cams, targets, small_cnn)[0]
    assert got == pytest.approx(float(after - before), abs=1e-6)


def test_batch_and_batch_size_invariance(small_cnn, images):
    x = images(3, size=10)
    cams = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(6))
    targets = [ClassifierOutputSoftmaxTarget(k) for k in (0, 1, 2)]
    percentiles = [30, 70]
    batched = ROADCombined(percentiles, noise=0, batch_size=4)(x, cams, targets, small_cnn)
    singles = [
        ROADCombined(percentiles, noise=0)(x[i : i + 1], cams[i : i + 1], targets[i : i + 1], small_cnn)
        for i in range(3)
    ]
    np.testing.assert_allclose(batched, np.concatenate(singles), atol=1e-7)
    # with noise: the draws follow (percentile, image) order whatever the batch size
    seeded = [
        ROADCombined(percentiles, generator=torch.Generator().manual_seed(9), batch_size=size)(
            x, cams, targets, small_cnn
        )
        for size in (1, 5, 32)
    ]
    # (a different draw order would move the scores by ~1e-3; batched convolutions round ~1e-9)
    np.testing.assert_allclose(seeded[0], seeded[1], rtol=0, atol=1e-7)
    np.testing.assert_allclose(seeded[0], seeded[2], rtol=0, atol=1e-7)
    assert np.abs(seeded[0] - batched).max() > 1e-5  # the noise is really there


def test_model_untouched(small_cnn, images):
    model = small_cnn.train()
    model.fc(torch.randn(2, 16)).sum().backward()
    before = model_snapshot(model)
    x = images(2, size=8)
    cams = torch.rand(2, 8, 8)
    ROADCombined([50], noise=0)(x, cams, [0, 1], model)
    assert_same_model(before, model_snapshot(model))
    with pytest.raises(ValueError, match="out of range"):
        ROADCombined([50], noise=0)(x, cams, [0, 99], model)
    assert_same_model(before, model_snapshot(model))


def test_bad_input(small_cnn):
    with pytest.raises(ValueError, match=r"percentile must be in \[0, 100\]; got 120"):
        ROADMostRelevantFirst(120)
    with pytest.raises(ValueError, match=r"percentiles\[0\] must be in \[0, 100\]"):
        ROADCombined([-5, 50])
    with pytest.raises(ValueError, match="noise"):
        ROADLeastRelevantFirst(noise=-0.1)
    volume, volume_cams = torch.zeros(1, 3, 4, 4, 4), torch.rand(1, 4, 4, 4)
    for metric in (ROADMostRelevantFirst(), ROADLeastRelevantFirstAverage(), ROADCombined()):
        with pytest.raises(ValueError, match=r"2-D images: input_tensor must be \(B, C, H, W\)"):
            metric(volume, volume_cams, [0], small_cnn)
    with pytest.raises(ValueError, match="cams has shape"):
        ROADCombined()(torch.zeros(1, 3, 8, 8), torch.rand(1, 4, 4), [0], small_cnn)
