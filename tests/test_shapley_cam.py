"""ShapleyCAM: the Hessian-corrected gradient, golden values on a quadratic head."""

from __future__ import annotations

import numpy as np
import torch

from pytorch_grad_cam import GradCAM, ShapleyCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

# A = x: channel 0 = [1, 3, 0], channel 1 = [2, 0, 1]; y = <W, a> + <V, a>^2 / 2.
X = torch.tensor([[[[1.0, 3.0, 0.0]], [[2.0, 0.0, 1.0]]]])
W = [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]
V = [[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]]
# <V, a> = 6: G = W + 6 V = [7, 6, 0 | 6, 1, 0]; HA = 6 V; G - HA / 2 = W + 3 V = [4, 3, 0 | 3, 1, 0].


def test_corrected_gradient_golden(mixing_head_net):
    model = mixing_head_net(W, quadratic=V)
    cam = ShapleyCAM(model, [model.features])
    view = cam.run_view(X, [ClassifierOutputTarget(0)], differentiate=cam.differentiate)
    expected = torch.tensor([[[[4.0, 3.0, 0.0]], [[3.0, 1.0, 0.0]]]])
    torch.testing.assert_close(view.gradients[0], expected)
    plain = cam.run_view(X, [ClassifierOutputTarget(0)], differentiate=ActivationsAndGradients.gradients)
    torch.testing.assert_close(plain.gradients[0], torch.tensor([[[[7.0, 6.0, 0.0]], [[6.0, 1.0, 0.0]]]]))


def test_golden_value(mixing_head_net):
    model = mixing_head_net(W, quadratic=V)
    # w = [7/3, 4/3]: 7/3 [1, 3, 0] + 4/3 [2, 0, 1] = [5, 7, 4/3] -> [11/17, 1, 0]
    cam = ShapleyCAM(model, [model.features])(X, [0])
    np.testing.assert_allclose(cam, [[[11 / 17, 1.0, 0.0]]], atol=1e-6)
    # GradCAM: w = [13/3, 7/3]: [9, 13, 7/3] -> [0.625, 1, 0]
    np.testing.assert_allclose(GradCAM(model, [model.features])(X, [0]), [[[0.625, 1.0, 0.0]]], atol=1e-6)


def test_equals_grad_cam_without_curvature(mixing_head_net):
    model = mixing_head_net(W)
    np.testing.assert_allclose(
        ShapleyCAM(model, [model.features])(X, [0]), GradCAM(model, [model.features])(X, [0]), atol=1e-7
    )


def test_several_layers_are_each_corrected_alone(small_cnn, images):
    """Two layers in one call: each layer's Hessian-vector product is its own (no cross terms)."""
    x = images(2, size=12)
    targets = [ClassifierOutputSoftmaxTarget(1), ClassifierOutputSoftmaxTarget(3)]
    layers = [small_cnn.block1[1], small_cnn.block2[1]]
    both = ShapleyCAM(small_cnn, layers)
    view = both.run_view(x, targets, differentiate=both.differentiate)
    for index, layer in enumerate(layers):
        alone = ShapleyCAM(small_cnn, [layer])
        single = alone.run_view(x, targets, differentiate=alone.differentiate)
        torch.testing.assert_close(view.gradients[index], single.gradients[0], atol=1e-6, rtol=1e-5)
    # and the correction is not zero here (softmax has curvature)
    plain = both.run_view(x, targets, differentiate=ActivationsAndGradients.gradients)
    correction = (plain.gradients[1] - view.gradients[1]).abs().max()
    assert correction > 0.01 * plain.gradients[1].abs().max()


def test_hessian_vector_product_by_autograd(small_cnn, images):
    """The correction equals d(G . A)/dA computed directly on the network after the layer."""
    x = images(1, size=12)
    cam = ShapleyCAM(small_cnn, [small_cnn.block2[1]])
    view = cam.run_view(x, [ClassifierOutputReST(2)], differentiate=cam.differentiate)
    with torch.no_grad():
        pre = small_cnn.block2[0](small_cnn.block1(x.clone()))
    acts = small_cnn.block2[1](pre).detach().requires_grad_(True)
    logits = small_cnn.fc(small_cnn.pool(torch.relu(acts)).flatten(1))
    score = ClassifierOutputReST(2)(logits[0])
    (grads,) = torch.autograd.grad(score, acts, create_graph=True)
    (hvp,) = torch.autograd.grad(grads, acts, grad_outputs=acts.detach())
    torch.testing.assert_close(view.gradients[0], (grads - 0.5 * hvp).detach(), atol=1e-6, rtol=1e-5)
