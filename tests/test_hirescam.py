"""HiResCAM: golden values on a hand-computable model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam import functional as CF

# Activations A = x: channel 0 = [1, 3, 0], channel 1 = [2, 0, 1] (a 1x3 image).
X = torch.tensor([[[[1.0, 3.0, 0.0]], [[2.0, 0.0, 1.0]]]])
# The logit's gradient: G0 = [1, 0, 1], G1 = [-1, 1, 2].
HEAD = [[1.0, 0.0, 1.0, -1.0, 1.0, 2.0]]


def test_golden_value(mixing_head_net):
    model = mixing_head_net(HEAD)
    cam = HiResCAM(model, [model.features])(X, [0])
    # sum_c G_c * A_c = [1, 0, 0] + [-2, 0, 2] = [-1, 0, 2] -> relu -> scaled
    np.testing.assert_allclose(cam, [[[0.0, 0.0, 1.0]]], atol=1e-6)
    # GradCAM averages the gradient first: w = [2/3, 2/3] -> 2/3 * [3, 3, 1] -> [1, 1, 0]
    np.testing.assert_allclose(GradCAM(model, [model.features])(X, [0]), [[[1.0, 1.0, 0.0]]], atol=1e-6)


def test_weights_are_the_gradients(mixing_head_net):
    model = mixing_head_net(HEAD)
    cam = HiResCAM(model, [model.features])
    grads = torch.randn(2, 3, 4, 5)
    acts = torch.randn(2, 3, 4, 5)
    raw = cam.get_cam_image(X, model.features, None, acts, grads, eigen_smooth=False)
    torch.testing.assert_close(raw, (grads * acts).sum(dim=1))


def test_eigen_smooth_warns_and_takes_the_principal_component(mixing_head_net):
    model = mixing_head_net(HEAD)
    cam = HiResCAM(model, [model.features])
    grads = torch.randn(2, 3, 4, 5)
    acts = torch.randn(2, 3, 4, 5)
    raw = cam.get_cam_image(X, model.features, None, acts, grads, eigen_smooth=True)
    torch.testing.assert_close(raw, CF.first_principal_component(grads * acts))
    with pytest.warns(UserWarning, match="faithfulness") as record:
        out = cam(X, [0], eigen_smooth=True)
    assert record[0].filename == __file__
    # G * A per channel: [1, 0, 0] and [-2, 0, 2]; centred over positions and projected on the
    # first principal component, by the shared function
    expected = CF.first_principal_component(torch.tensor([[[[1.0, 0.0, 0.0]], [[-2.0, 0.0, 2.0]]]]))
    expected = CF.scale_to_unit(torch.relu(expected))
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-6)
