"""Blank maps explained: constructed blank cases, the warning names the layer and the cause."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import GradCAM, ScoreCAM, XGradCAM, layer_search
from pytorch_grad_cam._core.diagnostics import Finding, blank_images
from pytorch_grad_cam.errors import BlankMapWarning
from pytorch_grad_cam.layer_search import cache as layer_cache
from pytorch_grad_cam.layer_search import search
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform


def run(cam, x, targets=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = cam(x, targets)
    return maps, [w for w in caught if issubclass(w.category, BlankMapWarning)]


class PreActivation(nn.Module):
    """conv -> ``bn`` (shifted to be negative everywhere) -> ReLU -> pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.bn.bias.fill_(-100.0)  # every activation of bn is negative
            self.fc.weight.abs_()

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x)) + 101.0).mean(dim=(2, 3)))


def test_blank_images_by_hand():
    maps = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 0.0]],
            [[-1.0, -2.0], [-3.0, -4.0]],
            [[2.0, 2.0], [2.0, 2.0]],
            [[0.0, 0.0], [0.0, 0.0]],
        ]
    )
    assert blank_images(maps).tolist() == [False, True, True, True]


@pytest.mark.parametrize("method", [XGradCAM, ScoreCAM])
def test_negative_weighted_activations_before_an_activation(method):
    model = PreActivation().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cam = method(model, [model.bn])
    maps, caught = run(cam, x, [1])
    assert float(maps.max()) == 0.0
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "every weighted activation of `bn` is negative for class 1" in text
    assert "(the layer comes before an activation)" in text
    assert f"{method.__name__} maps are blank here" in text
    assert "explain `relu` instead" in text
    assert cam.diagnostics == [Finding(0, "bn", "negative", "class 1", text.split(": ", 1)[1])]


def test_a_layer_after_global_pooling_is_named_as_the_cause():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 3, 1), nn.Flatten()
    ).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(model, [model[2]])
    maps, caught = run(cam, x)
    assert float(abs(maps).max()) == 0.0
    assert len(caught) == 1  # one warning for both images
    text = str(caught[0].message)
    assert text.startswith("blank map (images 0, 1): `2` outputs a 1x1 map (it comes after global pooling)")
    # the layer search is named, never run: a blank map costs no search
    assert "explain a layer before the pooling; `pytorch_grad_cam.utils.find_layers.find_target_layer" in text
    assert len(layer_cache._CACHE) == 0
    assert [f.kind for f in cam.diagnostics] == ["pooled", "pooled"]


def test_the_last_vit_block_gets_no_gradient(tiny_vit):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(tiny_vit, [tiny_vit.blocks[-1]], reshape_transform=lambda t: vit_reshape_transform(t, 4, 4))
    _, caught = run(cam, x)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "does not depend on `blocks.1` (its gradient is zero" in text
    assert "find_target_layer(model, input_tensor[:1], targets[:1])` names the layer" in text
    assert len(layer_cache._CACHE) == 0  # the search that would name blocks.1.norm1 did not run
    assert cam.diagnostics[0].kind == "no_gradient"


def test_zero_and_constant_maps(linear_head_net):
    model = linear_head_net([1.0], [[1.0, 1.0, 1.0, 1.0]])
    cam = GradCAM(model, [model.features])
    _, caught = run(cam, torch.zeros(1, 1, 2, 2), [0])
    assert "the weighted activations of `features` are all zero for class 0" in str(caught[0].message)
    _, caught = run(cam, torch.full((1, 1, 2, 2), 3.0), [0])
    assert "the GradCAM map of `features` is constant for class 0: it shows no location" in str(
        caught[0].message
    )


def test_only_the_blank_image_is_reported_and_a_fine_map_costs_no_search(linear_head_net):
    model = linear_head_net([1.0], [[1.0, 0.0, 0.0, 1.0]])
    cam = GradCAM(model, [model.features])
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[-1.0, -2.0], [-3.0, -4.0]]]])
    _, caught = run(cam, x, [0, 0])
    assert [(f.image, f.kind) for f in cam.diagnostics] == [(1, "negative")]
    assert "blank map (image 1)" in str(caught[0].message)
    layer_search.clear_cache()
    _, caught = run(cam, x[:1], [0])
    assert caught == [] and cam.diagnostics == []
    assert len(layer_cache._CACHE) == 0  # no search ran for a fine map


def test_a_blank_layer_filled_by_another_layer_is_kept_but_not_warned():
    # bn's XGradCAM map is blank (every weighted activation negative); relu's is not. The mean of
    # the two layers' maps is relu's: the finding is kept on the object, without a warning.
    model = PreActivation().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    alone = XGradCAM(model, [model.relu])(x, [1])
    assert float(alone.max()) > 0
    cam = XGradCAM(model, [model.bn, model.relu])
    maps, caught = run(cam, x, [1])
    assert caught == []
    # bn's unit map is 0 everywhere: the mean of the two, rescaled, is relu's map
    np.testing.assert_allclose(maps, alone, atol=1e-6)
    assert [(f.layer, f.kind, f.in_result) for f in cam.diagnostics] == [("bn", "negative", False)]
    # the same blank layer alone is warned (in_result True)
    _, caught = run(XGradCAM(model, [model.bn]), x, [1])
    assert len(caught) == 1


def test_a_call_with_given_layers_never_runs_the_layer_search(monkeypatch, tiny_vit):
    def refuse(*args, **kwargs):
        raise AssertionError("the layer search ran in a call whose target layers were given")

    monkeypatch.setattr(search, "_search", refuse)
    model = PreActivation().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cam = XGradCAM(model, [model.bn])
    _, caught = run(cam, x, [1, 1])
    assert [f.kind for f in cam.diagnostics] == ["negative", "negative"] and len(caught) == 1
    vit = GradCAM(tiny_vit, [tiny_vit.blocks[-1]], reshape_transform=lambda t: vit_reshape_transform(t, 4, 4))
    _, caught = run(vit, torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert [f.kind for f in vit.diagnostics] == ["no_gradient"] and len(caught) == 1


class Shrunk(nn.Module):
    """A fixed 1x1 conv whose map is the input x 1e-8, pooled into two classes with weights
    (1e-8, 0): GradCAM's raw map is the input x 2.5e-17 (a network whose activations and gradients
    vanish, as a randomly initialised HuggingFace CNN's do)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1e-8)
            self.fc.weight.copy_(torch.tensor([[1e-8], [0.0]]))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_a_map_fainter_than_the_scaling_epsilon_is_reported():
    # span 3e-16 (under 1e-14): scaled twice, s / (s + 1e-7), to at most 3e-9 / (3e-9 + 1e-7), 0.03
    spans = torch.tensor([[[3e-16, 0.0], [1e-16, 0.0]], [[3e-12, 0.0], [1e-12, 0.0]]])
    assert blank_images(spans).tolist() == [True, False]
    model = Shrunk().eval()
    x = torch.tensor([[[[4.0, 1.0], [1.0, 1.0]]]])
    cam = GradCAM(model, [model.conv])
    maps, caught = run(cam, x, [0])
    # raw map: 1e-8 (gradient of the mean, / 4) x 1e-8 x x = 2.5e-17 x x, spanning 7.5e-17; scaled twice
    once = 7.5e-17 / (7.5e-17 + 1e-7)
    assert float(maps.max()) == pytest.approx(once / (once + 1e-7), rel=1e-3)  # 0.0074
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "the GradCAM map of `conv` for class 0 spans only 7.5e-17" in text
    assert cam.diagnostics[0].kind == "faint"
