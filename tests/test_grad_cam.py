"""GradCAM: golden values worked out by hand, and the fast path against the slow definition."""

import numpy as np
import pytest
import torch

from pytorch_grad_cam import GradCAM


def test_golden_values(golden):
    model, x = golden
    # w_0 = mean(G_0) = (1 + 0 + 0 + 1) / 4 = 0.5; w_1 = mean(G_1) = (2 + 0 - 1 + 0) / 4 = 0.25
    # CAM = 0.5 A_0 + 0.25 A_1 = [[0.5, 0.75], [2.0, 2.0]]; ReLU keeps it; min 0.5, range 1.5
    expected = np.array([[0.0, 0.25 / 1.5], [1.0, 1.0]])
    cam = GradCAM(model, [model.features])(x, targets=[0])
    np.testing.assert_allclose(cam[0], expected, atol=1e-6)


def test_golden_values_top_class(class_choice):
    model, x = class_choice
    # targets=None: class 1 (logit 2 > 1). w_0 = mean(0) = 0, w_1 = mean([[0, 0], [1, 0]]) = 0.25:
    # CAM = 0.25 A_1 = [[0, -0.25], [0.5, 0]], ReLU [[0, 0], [0.5, 0]], scaled [[0, 0], [1, 0]].
    cam = GradCAM(model, [model.features])(x)
    np.testing.assert_allclose(cam[0], [[0.0, 0.0], [1.0, 0.0]], atol=1e-6)
    # class 0 would give 0.25 A_0 = [[0.25, 0.5], [0.75, 1]], scaled [[0, 1/3], [2/3, 1]]
    np.testing.assert_allclose(
        GradCAM(model, [model.features])(x, [0])[0], [[0, 1 / 3], [2 / 3, 1]], atol=1e-6
    )


def test_golden_values_3d(mixing_head_net):
    # The 2-D case with a depth axis of 1: the same numbers.
    from conftest import GOLDEN_HEAD, GOLDEN_X

    model = mixing_head_net(GOLDEN_HEAD, dims=3)
    x = torch.tensor([GOLDEN_X]).unsqueeze(2)
    cam = GradCAM(model, [model.features])(x, targets=[0])
    assert cam.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(cam[0, 0], [[0.0, 0.25 / 1.5], [1.0, 1.0]], atol=1e-6)


def slow_grad_cam(model, layer, x, categories):
    """GradCAM the long way: full autograd graph, full backward into every parameter."""
    model = model.eval()
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    try:
        x = x.clone().requires_grad_(True)
        logits = model(x)
        activation = captured["a"]
        activation.retain_grad()
        logits[torch.arange(len(x)), torch.tensor(categories)].sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    a, g = activation.detach(), activation.grad.detach()
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    flat = cam.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    flat = flat / (flat.max(1, keepdim=True).values + 1e-7)
    cam = torch.nn.functional.interpolate(
        flat.view_as(cam).unsqueeze(1), size=x.shape[2:], mode="bilinear", align_corners=False
    )[:, 0]
    flat = cam.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    return (flat / (flat.max(1, keepdim=True).values + 1e-7)).view_as(cam).numpy()


@pytest.mark.parametrize("layer_name", ["layer4", "layer3", "layer2"])
def test_fast_path_equals_slow_definition(resnet18, images, layer_name):
    x = images(2, size=64)
    layer = getattr(resnet18, layer_name)[-1]
    expected = slow_grad_cam(resnet18, layer, x, [3, 7])
    cam = GradCAM(resnet18, [layer])(x, targets=[3, 7])
    np.testing.assert_allclose(cam, expected, atol=1e-5)
