"""Deletion / insertion: hand-computed curves, the batched path against a step-by-step loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam.metrics.deletion_insertion import (
    DeletionInsertion,
    area_under_curve,
    gaussian_blur,
    relevance_ranks,
    step_counts,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

#: The informative region of a 4x4 image (its top-left 2x2 block) and a CAM that ranks it first.
REGION = torch.zeros(4, 4)
REGION[:2, :2] = 1
GOOD_CAM = REGION * 0.5 + torch.arange(16.0).view(4, 4) / 32


@pytest.fixture
def case(region_net):
    """The region model and the image 1..16 (row-major): logit 0 = 1 + 2 + 5 + 6 = 14."""
    return region_net(REGION), torch.arange(1.0, 17.0).view(1, 1, 4, 4)


def test_hand_computed_curves_and_areas(case):
    model, x = case
    target = [ClassifierOutputTarget(0)]
    metric = DeletionInsertion(steps=4, deletion_baseline="zeros", insertion_baseline=0.0)
    good = metric.curves(x, GOOD_CAM[None], target, model)
    np.testing.assert_array_equal(good.fractions, [0.0, 0.25, 0.5, 0.75, 1.0])
    # the first step deletes (inserts) exactly the region
    np.testing.assert_array_equal(good.deletion, [[14.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(good.insertion, [[0.0, 14.0, 14.0, 14.0, 14.0]])
    np.testing.assert_allclose(good.deletion_auc, [1.75])  # 0.25 * (14 + 0) / 2
    np.testing.assert_allclose(good.insertion_auc, [12.25])  # 0.25 * (7 + 14 + 14 + 14)
    inverse = metric.curves(x, (1 - GOOD_CAM)[None], target, model)
    np.testing.assert_array_equal(inverse.deletion, [[14.0, 14.0, 14.0, 14.0, 0.0]])
    np.testing.assert_allclose(inverse.deletion_auc, [12.25])
    np.testing.assert_allclose(inverse.insertion_auc, [1.75])
    np.testing.assert_allclose(metric(x, GOOD_CAM[None], target, model), [10.5])
    np.testing.assert_allclose(metric(x, (1 - GOOD_CAM)[None], target, model), [-10.5])


def test_pixel_by_pixel_order(case):
    model, x = case
    # one pixel a step, most relevant first: 6 (value of pixel 5), then 5, 2, 1 leave the logit
    metric = DeletionInsertion("deletion", steps=16)
    curves = metric.curves(x, GOOD_CAM[None], [ClassifierOutputTarget(0)], model)
    np.testing.assert_array_equal(curves.deletion[0, :6], [14.0, 8.0, 3.0, 1.0, 0.0, 0.0])
    assert curves.insertion is None
    np.testing.assert_allclose(metric(x, GOOD_CAM[None], [0], model), [19 / 16])  # (7 + 8 + 3 + 1) / 16
    with pytest.raises(ValueError, match="insertion curve was not computed"):
        curves.insertion_auc  # noqa: B018


def test_relevance_ranks_break_ties_in_row_major_order():
    ranks = relevance_ranks(torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]))
    np.testing.assert_array_equal(ranks.numpy(), [[2, 0, 1, 3], [0, 1, 2, 3]])
    np.testing.assert_array_equal(step_counts(10, 4).numpy(), [0, 2, 5, 7, 10])


def test_area_under_curve():
    curves = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(area_under_curve(curves, torch.tensor([0.0, 0.5, 1.0])).numpy(), [1.0, 0.5])
    np.testing.assert_allclose(area_under_curve(curves, torch.tensor([0.0, 0.2, 1.0])).numpy(), [1.0, 0.5])


def test_gaussian_blur_kernel_and_borders():
    taps = torch.arange(-5.0, 6.0)
    kernel = torch.exp(-(taps**2) / 50)
    kernel = kernel / kernel.sum()
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1
    blurred = gaussian_blur(impulse, sigma=5.0, kernel_size=11)
    torch.testing.assert_close(blurred[0, 0, 5:16, 5:16], torch.outer(kernel, kernel))
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-6)
    constant = torch.full((2, 3, 7, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(constant), constant)  # replicated borders keep a constant
    volume = torch.zeros(1, 1, 11, 11, 11)
    volume[0, 0, 5, 5, 5] = 1
    expected = kernel[:, None, None] * kernel[None, :, None] * kernel[None, None, :]
    torch.testing.assert_close(gaussian_blur(volume)[0, 0], expected)


def slow_curves(model, x, cams, category, steps, baseline_of):
    """The definition, one image and one step at a time: pixels sorted by (-value, index)."""
    height, width = cams.shape[-2:]
    pixels = height * width
    order = sorted(range(pixels), key=lambda j: (-float(cams.reshape(-1)[j]), j))
    curves = {}
    for kind in ("deletion", "insertion"):
        baseline = baseline_of[kind]
        values = []
        for k in range(steps + 1):
            count = k * pixels // steps
            image = x.clone() if kind == "deletion" else baseline.clone()
            for j in order[:count]:
                source = baseline if kind == "deletion" else x
                image[:, j // width, j % width] = source[:, j // width, j % width]
            with torch.no_grad():
                values.append(float(torch.softmax(model(image[None]), -1)[0, category]))
        curves[kind] = np.array(values)
    return curves


def test_batched_curves_equal_the_step_by_step_definition(small_cnn, images):
    x = images(2, size=6)
    cams = torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(0))
    cams[0, :2] = 0.5  # ties
    targets = [ClassifierOutputSoftmaxTarget(k) for k in (1, 3)]
    metric = DeletionInsertion(steps=9, batch_size=7)
    got = metric.curves(x, cams, targets, small_cnn)
    blurred = gaussian_blur(x)
    for i, category in enumerate((1, 3)):
        baselines = {"deletion": torch.zeros_like(x[i]), "insertion": blurred[i]}
        expected = slow_curves(small_cnn, x[i], cams[i], category, 9, baselines)
        np.testing.assert_allclose(got.deletion[i], expected["deletion"], atol=1e-6)
        np.testing.assert_allclose(got.insertion[i], expected["insertion"], atol=1e-6)
        widths = np.diff(got.fractions)
        for kind, area in (("deletion", got.deletion_auc), ("insertion", got.insertion_auc)):
            y = expected[kind]
            assert area[i] == pytest.approx(float(np.sum(widths * (y[1:] + y[:-1]) / 2)), abs=1e-6)


def test_batch_and_batch_size_invariance(small_cnn, images):
    x = images(3, size=8)
    cams = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = [ClassifierOutputSoftmaxTarget(k) for k in (0, 1, 2)]
    batched = DeletionInsertion(steps=8, batch_size=5)(x, cams, targets, small_cnn)
    assert batched.shape == (3,) and batched.dtype == np.float32
    singles = [
        DeletionInsertion(steps=8, batch_size=64)(
            x[i : i + 1], cams[i : i + 1], targets[i : i + 1], small_cnn
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(batched, np.concatenate(singles), atol=1e-6)


def test_tensor_baseline_and_targets_none(small_cnn, images):
    x = images(2, size=6)
    cams = torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        top = small_cnn(x).argmax(-1).tolist()
    grey = torch.full((3, 1, 1), 0.25)
    metric = DeletionInsertion("deletion", steps=6, deletion_baseline=grey)
    np.testing.assert_array_equal(
        metric(x, cams, None, small_cnn),
        DeletionInsertion("deletion", steps=6, deletion_baseline=0.25)(x, cams, top, small_cnn),
    )
    with pytest.raises(ValueError, match=r"deletion_baseline of shape \(2, 1, 1\) does not broadcast"):
        DeletionInsertion(steps=6, deletion_baseline=torch.zeros(2, 1, 1))(x, cams, top, small_cnn)


def test_model_untouched(small_cnn, images):
    model = small_cnn.train()
    model.fc(torch.randn(2, 16)).sum().backward()
    before = model_snapshot(model)
    x = images(2, size=6)
    cams = torch.rand(2, 6, 6)
    DeletionInsertion(steps=4)(x, cams, [0, 1], model)
    assert_same_model(before, model_snapshot(model))
    with pytest.raises(ValueError, match="out of range"):
        DeletionInsertion(steps=4)(x, cams, [0, 99], model)
    assert_same_model(before, model_snapshot(model))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "area"}, "mode must be one of"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"blur_kernel_size": 10}, "blur_kernel_size must be an odd int"),
        ({"blur_sigma": 0}, "blur_sigma must be a number > 0"),
        ({"deletion_baseline": "mean"}, "deletion_baseline must be 'zeros', 'blur'"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeletionInsertion(**kwargs)


def test_bad_call(small_cnn, images):
    with pytest.raises(ValueError, match="steps=100 exceeds the 36 pixels"):
        DeletionInsertion()(images(1, size=6), torch.rand(1, 6, 6), [0], small_cnn)
    with pytest.raises(ValueError, match="cams has shape"):
        DeletionInsertion(steps=4)(images(1, size=6), torch.rand(1, 6, 5), [0], small_cnn)
    with pytest.raises(ValueError, match="targets has 2 entries but the batch has 1"):
        DeletionInsertion(steps=4)(images(1, size=6), torch.rand(1, 6, 6), [0, 1], small_cnn)
