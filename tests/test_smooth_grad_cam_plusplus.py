"""SmoothGradCAMPlusPlus: torchcam 0.5's Smooth Grad-CAM++, golden values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import SmoothGradCAMPlusPlus
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

X = torch.tensor([[[[1.0, 3.0, 0.0]], [[2.0, 0.0, 1.0]]]])
# A linear head: the gradient is G0 = [1, 1, 1], G1 = [2, 0, -1] whatever the input.
HEAD = [[1.0, 1.0, 1.0, 2.0, 0.0, -1.0]]
# channel 0: sum(G^3 A) = 4, a = 1 / (2 + 4) = 1/6 at each position, w0 = 3 / 6 = 0.5
# channel 1: sum(G^3 A) = 16 - 1 = 15, a = [4 / 23, 0, 1 / 17], relu(G) = [2, 0, 0], w1 = 8 / 23
WEIGHTS = torch.tensor([0.5, 8 / 23])


def test_weights_golden():
    grads = torch.tensor(HEAD).view(1, 2, 1, 3)
    weights = CF.smooth_grad_cam_plusplus_weights(grads**2, grads**3, X, grads)
    torch.testing.assert_close(weights, WEIGHTS.unsqueeze(0))


def test_golden_value_without_noise(mixing_head_net):
    model = mixing_head_net(HEAD)
    cam = SmoothGradCAMPlusPlus(model, [model.features], std=0.0)(X, [0])
    # 0.5 [1, 3, 0] + 8/23 [2, 0, 1] = [27.5, 34.5, 8] / 23 -> [19.5 / 26.5, 1, 0]
    np.testing.assert_allclose(cam, [[[19.5 / 26.5, 1.0, 0.0]]], atol=1e-6)


def test_map_uses_the_last_noisy_activations(mixing_head_net):
    """As torchcam: the weights come from the averaged derivatives, the map from the last noisy pass."""
    model = mixing_head_net(HEAD)
    cam = SmoothGradCAMPlusPlus(model, [model.features], num_samples=3, std=0.5, seed=11)(X, [0])
    generator = torch.Generator().manual_seed(11)
    noises = [torch.randn((1, 2, 1, 3), generator=generator) for _ in range(3)]
    last = X + 0.5 * noises[-1]
    raw = torch.einsum("c,bchw->bhw", WEIGHTS, last)
    expected = CF.aggregate_layers([CF.layer_cam_to_unit(raw, (1, 3))])
    np.testing.assert_allclose(cam, expected.numpy(), atol=1e-6)


def test_derivatives_are_averaged_over_the_noise(small_cnn, images):
    x = images(1, size=12)
    cam = SmoothGradCAMPlusPlus(small_cnn, [small_cnn.block2], num_samples=2, std=0.4, seed=3)
    clean = cam.run_view(x, None, differentiate=None)
    generator = torch.Generator().manual_seed(3)
    views = []
    for _ in range(2):
        noisy = x + 0.4 * torch.randn((1, 3, 12, 12), generator=generator)
        views.append(cam.run_view(noisy, clean.targets, differentiate=ActivationsAndGradients.gradients))
    grads = [v.gradients[0] for v in views]
    weights = CF.smooth_grad_cam_plusplus_weights(
        (grads[0] ** 2 + grads[1] ** 2) / 2,
        (grads[0] ** 3 + grads[1] ** 3) / 2,
        clean.activations[0],
        grads[1],
    )
    raw = CF.weighted_sum(weights, views[1].activations[0])
    expected = CF.aggregate_layers([CF.layer_cam_to_unit(raw, (12, 12))])
    np.testing.assert_allclose(cam(x), expected.numpy(), atol=1e-6)


def test_seed(small_cnn, images):
    x = images(2, size=12)
    a = SmoothGradCAMPlusPlus(small_cnn, [small_cnn.block2], seed=1)(x)
    b = SmoothGradCAMPlusPlus(small_cnn, [small_cnn.block2], seed=1)(x)
    c = SmoothGradCAMPlusPlus(small_cnn, [small_cnn.block2], seed=2)(x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples must be an int >= 1"),
        ({"num_samples": 2.0}, TypeError, "num_samples must be an int >= 1"),
        ({"std": -1.0}, ValueError, "std must be a number >= 0"),
        ({"std": "0.3"}, ValueError, "std must be a number >= 0"),
        ({"seed": 0.5}, TypeError, "seed must be an int or None"),
    ],
)
def test_bad_arguments(small_cnn, kwargs, error, match):
    with pytest.raises(error, match=match):
        SmoothGradCAMPlusPlus(small_cnn, [small_cnn.block2], **kwargs)
