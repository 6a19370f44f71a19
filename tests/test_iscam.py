"""IS-CAM: hand-computed weights, torchcam's definition, de-duplication, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DuplicateChannels, layer_output

from pytorch_grad_cam import ISCAM
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.iscam import iscam_coefficients
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def reference_weights(model, layer, x, classes, num_samples):
    """torchcam 0.5's IS-CAM, one channel and one scale at a time."""
    acts = layer_output(model, layer, x)
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    scales = [sum((j + 1) / num_samples for j in range(i + 1)) for i in range(num_samples)]
    weights = []
    for b, category in enumerate(classes):
        scores = []
        for k in range(acts.shape[1]):
            a = acts[b : b + 1, k : k + 1]
            a = (a - a.min()) / ((a - a.min()).max() + 1e-8)
            mask = F.interpolate(a, size=x.shape[2:], mode=mode, align_corners=False)
            with torch.no_grad():
                total = sum(model(scale * (mask * x[b : b + 1]))[0, category] for scale in scales)
            scores.append(total / num_samples)
        weights.append(torch.softmax(torch.stack(scores), dim=0))
    return torch.stack(weights), acts


def reference_cam(model, layer, x, classes, num_samples):
    weights, acts = reference_weights(model, layer, x, classes, num_samples)
    return CF.aggregate_layers([CF.layer_cam_to_unit(CF.weighted_sum(weights, acts), x.shape[2:])]).numpy()


def test_coefficients_are_torchcams_cumulative_scales():
    assert iscam_coefficients(3) == pytest.approx([1 / 3, 1.0, 2.0])
    assert iscam_coefficients(10)[-1] == pytest.approx(5.5)  # (n + 1) / 2


def test_golden_weights(linear_head_net):
    # A_0 = x, A_1 = -x, x = [-1, 2, 4]; normalised at the layer: N_0 = [0, 3, 5] / 5, N_1 = [5, 2, 0] / 5.
    # Class 0 scores the sum of the masked input: s(x N_0) = 26/5, s(x N_1) = -1/5. The model is linear,
    # so scale c_i multiplies the score: s_k = mean(1/3, 1, 2) s(x N_k) = 10/9 s(x N_k).
    model = linear_head_net([1.0, -1.0], [[1, 1, 0, 0, 0, -1]])
    x = torch.tensor([[[[-1.0, 2.0, 4.0]]]])
    cam = ISCAM(model, [model.features], num_samples=3)
    weights = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(0)], torch.cat([x, -x], 1), None)
    scores = [10 / 9 * 26 / 5, 10 / 9 * -1 / 5]
    total = sum(math.exp(s) for s in scores)
    torch.testing.assert_close(weights, torch.tensor([[math.exp(s) / total for s in scores]]))
    assert cam.masks_scored == 2 * 3


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_equals_torchcams_definition_for_any_batch_size(small_cnn, images, batch_size):
    x = images(2, size=8)
    got = ISCAM(small_cnn, [small_cnn.block2], batch_size=batch_size, num_samples=3)(x, [1, 3])
    np.testing.assert_allclose(got, reference_cam(small_cnn, small_cnn.block2, x, [1, 3], 3), atol=1e-5)


def test_identical_normalised_channels_are_scored_once(images):
    model = DuplicateChannels().eval()
    x = images(1, size=8)
    cam = ISCAM(model, [model.features], num_samples=2, batch_size=4)
    got = cam(x, [1])
    assert cam.masks_scored == 3 * 2
    np.testing.assert_allclose(got, reference_cam(model, model.features, x, [1], 2), atol=1e-5)


def test_3d_input(small_cnn3d):
    x = torch.randn(1, 3, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    got = ISCAM(small_cnn3d, [small_cnn3d.block2], num_samples=2)(x, [0])
    np.testing.assert_allclose(got, reference_cam(small_cnn3d, small_cnn3d.block2, x, [0], 2), atol=1e-5)


@pytest.mark.parametrize("value, error", [(0, ValueError), (2.0, TypeError)])
def test_bad_num_samples(small_cnn, value, error):
    with pytest.raises(error, match="num_samples"):
        ISCAM(small_cnn, [small_cnn.block2], num_samples=value)
