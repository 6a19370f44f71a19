"""GradCAMElementWise: golden values on a hand-computable model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import GradCAMElementWise, HiResCAM
from pytorch_grad_cam import functional as CF

X = torch.tensor([[[[1.0, 3.0, 0.0]], [[2.0, 0.0, 1.0]]]])
HEAD = [[1.0, 0.0, 1.0, -1.0, 1.0, 2.0]]


def test_golden_value(mixing_head_net):
    model = mixing_head_net(HEAD)
    cam = GradCAMElementWise(model, [model.features])(X, [0])
    # relu(G0 * A0) + relu(G1 * A1) = [1, 0, 0] + [0, 0, 2] = [1, 0, 2] -> [0.5, 0, 1]
    np.testing.assert_allclose(cam, [[[0.5, 0.0, 1.0]]], atol=1e-6)
    # HiResCAM sums before the ReLU: [-1, 0, 2] -> [0, 0, 1]
    np.testing.assert_allclose(HiResCAM(model, [model.features])(X, [0]), [[[0.0, 0.0, 1.0]]], atol=1e-6)


def test_eigen_smooth_is_the_principal_component_of_the_rectified_products(mixing_head_net):
    model = mixing_head_net(HEAD)
    cam = GradCAMElementWise(model, [model.features])
    grads = torch.randn(2, 3, 4, 5)
    acts = torch.randn(2, 3, 4, 5)
    raw = cam.get_cam_image(X, model.features, None, acts, grads, eigen_smooth=True)
    torch.testing.assert_close(raw, CF.first_principal_component(torch.relu(grads * acts)))
    plain = cam.get_cam_image(X, model.features, None, acts, grads, eigen_smooth=False)
    torch.testing.assert_close(plain, torch.relu(grads * acts).sum(dim=1))


def test_weights_are_not_defined(mixing_head_net):
    model = mixing_head_net(HEAD)
    with pytest.raises(NotImplementedError):
        GradCAMElementWise(model, [model.features]).get_cam_weights(X, model.features, None, X, X)
