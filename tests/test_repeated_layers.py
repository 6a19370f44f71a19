"""A target layer that runs more than once in one forward: an error, or the call the user chose.

Each model here reuses one module (a shared block applied twice, a block applied at two scales, a
convolution or a ReLU used twice); its twin has a separate copy of the module per call, with the
same weights, so the twin's maps are the definition of "the map of call k".
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import LAYER_METHODS
from torch import nn

from pytorch_grad_cam import DeepFeatureFactorization, FullGrad, GradCAM, GuidedBackpropReLUModel
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.registry import METHODS

NAMES = [name for name in LAYER_METHODS if METHODS[name].cls is not FullGrad]


def block(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())


class SharedNet(nn.Module):
    """stem -> block -> block (the same module, or its twin copy) -> pool -> fc."""

    def __init__(self, twin: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.block = block(6)
        self.second = copy.deepcopy(self.block) if twin else self.block
        self.pool = nn.AdaptiveAvgPool2d(1)  # AblationCAM's pooled route
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.second(self.block(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))


class TwoScaleNet(nn.Module):
    """The same block on the image and on its half-size copy; the pooled features are added."""

    def __init__(self, twin: bool = False) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.block = block(6)
        self.small = copy.deepcopy(self.block) if twin else self.block
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        stem = self.stem(x)
        full = self.block(stem)
        half = self.small(F.avg_pool2d(stem, 2))
        return self.fc(full.mean(dim=(2, 3)) + 2.0 * half.mean(dim=(2, 3)))


def make(name, model, layers, **kwargs):
    cls = METHODS[name].cls
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", 0)
    return cls(model, layers, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_refuses_a_repeated_layer_without_a_choice(name, images):
    model = SharedNet().eval()
    with pytest.raises(ValueError, match=r"target_layers\[0\] \(Sequential\) ran 2 times .* layer_call="):
        make(name, model, [model.block])(images(1, size=8))


@pytest.mark.parametrize("net", [SharedNet, TwoScaleNet])
@pytest.mark.parametrize("name", NAMES)
def test_every_method_explains_the_chosen_call(name, net, images):
    model, twin = net().eval(), net(twin=True).eval()
    second = twin.second if net is SharedNet else twin.small
    x = images(2, size=12, seed=2)
    targets = [1, 3] if METHODS[name].cls.uses_targets else None
    maps = {}
    for call, twin_layer in ((0, twin.block), (1, second)):
        expected = make(name, twin, [twin_layer])(x, targets)
        got = make(name, model, [model.block], layer_call=call)(x, targets)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        maps[call] = got
    # the two calls give different maps: the choice matters
    assert np.abs(maps[0] - maps[1]).max() > 1e-2


def test_layer_call_per_layer_and_bad_values(images):
    model, twin = SharedNet().eval(), SharedNet(twin=True).eval()
    x = images(1, size=8)
    expected = GradCAM(twin, [twin.second, twin.stem])(x, [2])
    got = GradCAM(model, [model.block, model.stem], layer_call=[1, None])(x, [2])
    np.testing.assert_allclose(got, expected)
    with pytest.raises(ValueError, match=r"layer_call=2 .* target_layers\[0\] \(Sequential\) ran 2 times"):
        GradCAM(model, [model.block], layer_call=2)(x)
    with pytest.raises(ValueError, match=r"layer_call=1 .* target_layers\[1\] \(Sequential\) ran once"):
        GradCAM(model, [model.block, model.stem], layer_call=1)(x)
    for bad in (-1, True, "all", 1.5, [0]):
        with pytest.raises((TypeError, ValueError), match="layer_call"):
            GradCAM(model, [model.block, model.stem], layer_call=bad)
    # the automatic choice only picks layers that run once: layer_call needs layers given by hand
    with pytest.raises(TypeError, match="layer_call chooses a call of a target layer you give"):
        GradCAM(model, layer_call=1)


def test_capture_counts_the_calls(images):
    model = SharedNet().eval()
    x = images(1, size=8)
    with ActivationsAndGradients(model, [model.block, model.stem], track_gradients=False) as capture:
        model(x)
    assert capture.call_counts == [2, 1]
    with ActivationsAndGradients(model, [model.block], track_gradients=False, calls=[1]) as capture:
        model(x)
    second_input = model.block(model.stem(x))
    assert torch.equal(capture.captured[0], model.block(second_input))


def test_ablation_substitutes_the_chosen_call_only(images):
    # AblationCAM replaces the layer's output in a hook: only the chosen call is ablated, on every
    # route (the twin ablates its own copy of the module)
    from pytorch_grad_cam import AblationCAM

    model, twin = SharedNet().eval(), SharedNet(twin=True).eval()
    x = images(1, size=8, seed=5)
    for call, layer in ((0, twin.block), (1, twin.second)):
        expected = AblationCAM(twin, [layer], batch_size=4)(x, [0])
        cam = AblationCAM(model, [model.block], batch_size=4, layer_call=call)
        np.testing.assert_allclose(cam(x, [0]), expected, atol=1e-5)
        assert cam.routes == [["cached", "pooled"][call]]
        # without the capture's output: the ablation passes find the layer's output themselves
        ones = torch.ones(1, 6, 8, 8)
        weights = cam.get_cam_weights(x, model.block, [lambda o: o[0]], ones, None)
        reference = AblationCAM(twin, [layer], batch_size=4).get_cam_weights(
            x, layer, [lambda o: o[0]], ones, None
        )
        assert torch.allclose(weights, reference)


class ConvTwice(nn.Module):
    """One convolution (with a bias) applied twice, or its twin copy."""

    def __init__(self, twin: bool = False) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.again = copy.deepcopy(self.conv) if twin else self.conv
        self.relu = nn.ReLU()
        self.relu_again = nn.ReLU() if twin else self.relu
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        x = self.relu_again(self.again(self.relu(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_fullgrad_counts_every_call_of_a_bias_layer(images):
    x = images(2, size=8, seed=6)
    expected = FullGrad(ConvTwice(twin=True).eval())(x, [0, 1])
    np.testing.assert_allclose(FullGrad(ConvTwice().eval())(x, [0, 1]), expected, atol=1e-6)


def test_guided_backprop_guides_every_call_of_a_relu(images):
    x = images(2, size=8, seed=7)
    expected = GuidedBackpropReLUModel(ConvTwice(twin=True).eval())(x, [0, 1])
    np.testing.assert_allclose(GuidedBackpropReLUModel(ConvTwice().eval())(x, [0, 1]), expected, atol=1e-6)


def test_dff_refuses_or_takes_the_chosen_call(images):
    model, twin = SharedNet().eval(), SharedNet(twin=True).eval()
    x = images(2, size=8, seed=8)
    with pytest.raises(ValueError, match=r"target_layer \(Sequential\) ran 2 times .* layer_call="):
        DeepFeatureFactorization(model, model.block)(x, n_components=2)
    concepts, maps = DeepFeatureFactorization(model, model.block, layer_call=1)(x, n_components=2)
    expected_concepts, expected_maps = DeepFeatureFactorization(twin, twin.second)(x, n_components=2)
    np.testing.assert_allclose(concepts, expected_concepts, atol=1e-5)
    np.testing.assert_allclose(np.stack(maps), np.stack(expected_maps), atol=1e-5)
