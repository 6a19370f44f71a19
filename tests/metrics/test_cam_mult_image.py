"""CamMultImageConfidenceChange, DropInConfidence, IncreaseInConfidence: hand-computed scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam.metrics.cam_mult_image import (
    CamMultImageConfidenceChange,
    DropInConfidence,
    IncreaseInConfidence,
    multiply_tensor_with_cam,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

#: The informative region of a 4x4 image: its top-left 2x2 block.
REGION = torch.zeros(4, 4)
REGION[:2, :2] = 1


@pytest.fixture
def case(region_net):
    """The region model and an image 1..16 (row-major): logit 0 = 1 + 2 + 5 + 6 = 14."""
    model = region_net(REGION)
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    return model, x


def test_multiply_tensor_with_cam_broadcasts_over_channels():
    image = torch.arange(8.0).view(2, 2, 2)
    cam = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
    expected = torch.tensor([[[0.0, 0.0], [1.0, 6.0]], [[4.0, 0.0], [3.0, 14.0]]])
    torch.testing.assert_close(multiply_tensor_with_cam(image, cam), expected)


def test_cam_on_the_region_keeps_the_score_and_its_inverse_loses_it(case):
    model, x = case
    target = [ClassifierOutputTarget(0)]
    metric = CamMultImageConfidenceChange()
    good, inverse, half = REGION[None], 1 - REGION[None], torch.full((1, 4, 4), 0.5)
    # x * REGION keeps all of logit 0; x * (1 - REGION) zeroes it; x * 0.5 halves it.
    np.testing.assert_array_equal(metric(x, good.numpy(), target, model), np.float32([0.0]))
    np.testing.assert_array_equal(metric(x, inverse.numpy(), target, model), np.float32([-14.0]))
    np.testing.assert_array_equal(metric(x, half, target, model), np.float32([-7.0]))
    np.testing.assert_array_equal(metric(x, half, target, model, return_diff=False), np.float32([7.0]))


def test_drop_and_increase_in_confidence(case):
    model, x = case
    target = [ClassifierOutputTarget(0)]
    good, inverse, double = REGION[None], 1 - REGION[None], torch.full((1, 4, 4), 2.0)
    drop, increase = DropInConfidence(), IncreaseInConfidence()
    np.testing.assert_array_equal(drop(x, good, target, model), np.float32([0.0]))
    np.testing.assert_array_equal(drop(x, inverse, target, model), np.float32([14.0]))
    np.testing.assert_array_equal(drop(x, double, target, model), np.float32([0.0]))  # a gain is no drop
    np.testing.assert_array_equal(increase(x, good, target, model), np.float32([0.0]))  # equal is no gain
    np.testing.assert_array_equal(increase(x, double, target, model), np.float32([1.0]))
    assert drop(x, good, target, model).dtype == np.float32
    assert increase(x, good, target, model).dtype == np.float32


def test_return_visualization(case):
    model, x = case
    cams = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    scores, images = DropInConfidence()(x, cams, [0], model, return_visualization=True)
    torch.testing.assert_close(images, x * cams[:, None])
    expected = max(float((x * REGION).sum() - (x * cams[:, None] * REGION).sum()), 0.0)
    np.testing.assert_allclose(scores, [expected], rtol=1e-6)


def test_batch_and_batch_size_invariance(small_cnn, images):
    x = images(5, size=16)
    cams = torch.rand(5, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = [ClassifierOutputSoftmaxTarget(k) for k in (0, 1, 2, 3, 4)]
    batched = CamMultImageConfidenceChange()(x, cams, targets, small_cnn)
    assert batched.shape == (5,) and batched.dtype == np.float32
    singles = [
        CamMultImageConfidenceChange()(x[i : i + 1], cams[i : i + 1], targets[i : i + 1], small_cnn)
        for i in range(5)
    ]
    np.testing.assert_allclose(batched, np.concatenate(singles), atol=1e-6)
    chunked = CamMultImageConfidenceChange(batch_size=2)(x, cams, targets, small_cnn)
    np.testing.assert_allclose(batched, chunked, atol=1e-6)
    # the same numbers by hand: softmax of the model on x * cam minus on x
    with torch.no_grad():
        after = torch.softmax(small_cnn(x * cams[:, None]), -1)[range(5), range(5)]
        before = torch.softmax(small_cnn(x), -1)[range(5), range(5)]
    np.testing.assert_allclose(batched, (after - before).numpy(), atol=1e-6)


def test_targets_none_and_ints(small_cnn, images):
    x = images(2, size=8)
    cams = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        top = small_cnn(x).argmax(-1).tolist()
    metric = CamMultImageConfidenceChange()
    expected = metric(x, cams, [ClassifierOutputTarget(k) for k in top], small_cnn)
    np.testing.assert_array_equal(metric(x, cams, None, small_cnn), expected)
    np.testing.assert_array_equal(metric(x, cams, top, small_cnn), expected)


def test_model_untouched(small_cnn, images):
    model = small_cnn.train()
    model.fc(torch.randn(2, 16)).sum().backward()
    before = model_snapshot(model)
    x = images(2, size=8)
    cams = torch.rand(2, 8, 8)
    # in train mode BatchNorm would use (and update) batch statistics: the metric runs in eval mode
    scores = CamMultImageConfidenceChange()(x, cams, [0, 1], model)
    assert_same_model(before, model_snapshot(model))
    eval_scores = CamMultImageConfidenceChange()(x, cams, [0, 1], model.eval())
    np.testing.assert_array_equal(scores, eval_scores)
    model.train()

    def failing(output):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        CamMultImageConfidenceChange()(x, cams, [failing, failing], model)
    assert_same_model(before, model_snapshot(model))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cams": np.zeros((2, 4, 5), np.float32)}, ValueError, r"cams has shape \(2, 4, 5\).*\(2, 4, 4\)"),
        ({"cams": np.zeros((4, 4), np.float32)}, ValueError, "cams has shape"),
        ({"cams": [[0.0]]}, TypeError, "cams must be a numpy array or a torch.Tensor"),
        ({"cams": np.full((2, 4, 4), np.nan, np.float32)}, ValueError, "NaN"),
        ({"targets": [0]}, ValueError, "targets has 1 entries but the batch has 2"),
        ({"targets": ["a", "b"]}, TypeError, r"targets\[0\]"),
        ({"model": "model"}, TypeError, "model must be a torch.nn.Module"),
        ({"input_tensor": torch.zeros(2, 4, 4)}, ValueError, "input_tensor must be a batch"),
    ],
)
def test_bad_input(region_net, kwargs, error, match):
    arguments = {
        "input_tensor": torch.zeros(2, 1, 4, 4),
        "cams": np.zeros((2, 4, 4), np.float32),
        "targets": [0, 0],
        "model": region_net(REGION),
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        DropInConfidence()(**arguments)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        CamMultImageConfidenceChange(batch_size=batch_size)
