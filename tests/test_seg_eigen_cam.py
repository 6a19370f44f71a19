"""SegEigenCAM: the principal component of |G| * A, sign-corrected."""

from __future__ import annotations

import numpy as np
import torch

from pytorch_grad_cam import EigenGradCAM, SegEigenCAM
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

X = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
# Channel 0 = x, channel 1 = -x; the logit's gradient: G0 = [1, 0, 1, 0], G1 = [0, -1, 0, 1].
HEAD = [[1.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0, 1.0]]


def test_golden_value(linear_head_net):
    model = linear_head_net([1.0, -1.0], HEAD)
    # |G| * A, positions x channels: [1, 0], [0, -2], [3, 0], [0, -4]; centred: [0, 1.5], [-1, -0.5],
    # [2, 1.5], [-1, -2.5]. X^T X = [[6, 6], [6, 11]], top eigenvector [2, 3] / sqrt(13), projection
    # [4.5, -3.5, 8.5, -9.5] / sqrt(13): its minimum outweighs its maximum, so the sign flips.
    cam = SegEigenCAM(model, [model.features])(X, [0])
    np.testing.assert_allclose(cam, [[[0.0, 3.5 / 9.5, 0.0, 1.0]]], atol=1e-6)


def test_raw_map_golden_the_gradients_magnitude_times_the_activations(linear_head_net):
    model = linear_head_net([1.0, -1.0], HEAD)
    cam = SegEigenCAM(model, [model.features])
    # channel 0: A = [1, 1, 1], G = [2, -1, 1] (channel 1 all zero): |G| * A = [2, 1, 1], centred
    # [2/3, -1/3, -1/3], its own principal direction; the largest magnitude is kept positive.
    # (G * A = [2, -1, 1] would give [-4/3, 5/3, -2/3] instead.)
    acts = torch.tensor([[[[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]]]])
    grads = torch.tensor([[[[2.0, -1.0, 1.0]], [[0.0, 0.0, 0.0]]]])
    raw = cam.get_cam_image(X, model.features, None, acts, grads, eigen_smooth=False)
    torch.testing.assert_close(raw, torch.tensor([[[2 / 3, -1 / 3, -1 / 3]]]), atol=1e-6, rtol=0)


def test_differs_from_eigen_grad_cam(linear_head_net):
    model = linear_head_net([1.0, -1.0], HEAD)
    seg = SegEigenCAM(model, [model.features])(X, [0])
    eigen_grad = EigenGradCAM(model, [model.features])(X, [0])
    assert np.abs(seg - eigen_grad).max() > 0.1


def test_with_a_segmentation_target():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)
    )
    x = torch.randn(1, 3, 6, 6)
    mask = np.zeros((6, 6), dtype=np.float32)
    mask[:3, :3] = 1
    cam = SegEigenCAM(model, [model[0]])(x, [SemanticSegmentationTarget(1, mask)])
    # the definition, by autograd
    acts = model[0](x).detach().requires_grad_(True)
    score = (model[2](model[1](acts))[0, 1] * torch.from_numpy(mask)).sum()
    (grads,) = torch.autograd.grad(score, acts)
    raw = CF.first_principal_component(grads.abs() * acts.detach())
    expected = CF.aggregate_layers([CF.layer_cam_to_unit(raw, (6, 6))])
    np.testing.assert_allclose(cam, expected.numpy(), atol=1e-6)
