"""KPCA_CAM: kernel PCA in torch against hand and scikit-learn values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam import KPCA_CAM, EigenCAM
from pytorch_grad_cam import functional as CF

# 6 positions (a 2x3 map) x 2 channels.
SAMPLES = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [2.0, 2.0], [0.0, 0.0], [1.0, 3.0]])
ACTIVATIONS = SAMPLES.T.reshape(1, 2, 2, 3)
# scikit-learn 1.x: KernelPCA(n_components=1, kernel=...).fit_transform(SAMPLES - SAMPLES.mean(0))
SKLEARN = {
    "sigmoid": [0.55035021, 0.17459214, -0.34004389, -0.52821033, 0.79451457, -0.6512027],
    "rbf": [0.67544939, -0.19136672, -0.25476621, -0.46399766, 0.71195839, -0.47727719],
    "poly": [-1.27069478, -0.34807632, 3.31696126, 0.85943078, -2.74185218, 0.18423124],
    "cosine": [0.94048202, 0.05674837, -0.33063577, -0.91120085, 1.01392279, -0.76931655],
}


def test_two_samples_by_hand():
    # centred samples +a and -a with C = 1, gamma = 1: K = [[p, q], [q, p]], p = tanh(a^2 + 1),
    # q = tanh(1 - a^2); the centred K has eigenpair (p - q, [1, -1] / sqrt(2)).
    acts = torch.tensor([[[[2.0, 0.0]]]])  # centred: [1, -1]
    projection = CF.kernel_principal_component(acts, "sigmoid")
    value = math.sqrt((math.tanh(2.0) - math.tanh(0.0)) / 2)
    torch.testing.assert_close(projection, torch.tensor([[[value, -value]]]))


@pytest.mark.parametrize("kernel", sorted(SKLEARN))
def test_matches_scikit_learn(kernel):
    projection = CF.kernel_principal_component(ACTIVATIONS, kernel)
    torch.testing.assert_close(projection.flatten(), torch.tensor(SKLEARN[kernel]), atol=1e-6, rtol=1e-6)


def test_gamma_scales_the_kernel():
    samples = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])
    dot = samples @ samples.transpose(1, 2)
    torch.testing.assert_close(CF.kernel_matrix(samples, "sigmoid", 0.3), torch.tanh(0.3 * dot + 1))
    torch.testing.assert_close(CF.kernel_matrix(samples, "sigmoid"), torch.tanh(dot / 2 + 1))
    distances = torch.tensor([[[0.0, 10.0], [10.0, 0.0]]])
    torch.testing.assert_close(CF.kernel_matrix(samples, "rbf", 0.1), torch.exp(-0.1 * distances))
    torch.testing.assert_close(CF.kernel_matrix(samples, "poly", 1.0), (dot + 1) ** 3)
    with pytest.raises(ValueError, match="kernel must be one of"):
        CF.kernel_matrix(samples, "laplacian")


def test_linear_kernel_is_eigencam(small_cnn, images):
    x = images(2, size=16)
    linear = KPCA_CAM(small_cnn, [small_cnn.block2], kernel="linear")(x)
    eigen = EigenCAM(small_cnn, [small_cnn.block2])(x)
    np.testing.assert_allclose(linear, eigen, atol=1e-5)


def test_method_maps_the_kernel_projection(linear_head_net):
    model = linear_head_net([1.0, -2.0], [[1.0] * 12])
    x = torch.tensor([[[[0.0, 1.0, 5.0], [2.0, 2.0, 4.0]]]])
    acts = torch.cat([x, -2 * x], dim=1)
    expected = CF.layer_cam_to_unit(CF.kernel_principal_component(acts, "rbf", 0.2), (2, 3))
    cam = KPCA_CAM(model, [model.features], kernel="rbf", gamma=0.2)(x)
    np.testing.assert_allclose(cam, CF.scale_to_unit(expected).numpy(), atol=1e-6)


def test_constant_activations_give_zeros():
    assert torch.equal(CF.kernel_principal_component(torch.ones(1, 3, 2, 2)), torch.zeros(1, 2, 2))


def test_bad_arguments(linear_head_net):
    model = linear_head_net([1.0], [[1.0] * 4])
    with pytest.raises(ValueError, match="kernel must be one of"):
        KPCA_CAM(model, [model.features], kernel="gaussian")
    with pytest.raises(TypeError, match="gamma must be"):
        KPCA_CAM(model, [model.features], gamma="auto")
