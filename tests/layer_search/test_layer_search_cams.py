"""``target_layers`` omitted: every method of the registry chooses the layer, as passing it by hand does."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import LAYER_METHODS, SmallConvNet, assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam import FullGrad, GradCAM, layer_search
from pytorch_grad_cam.registry import METHODS

NAMES = LAYER_METHODS


def make(name, model, *args, **kwargs):
    cls = METHODS[name].cls
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", 0)
    return cls(model, *args, **kwargs)


def targets_of(name, batch):
    return [1, 3, 0][:batch] if METHODS[name].cls.uses_targets else None


@pytest.mark.parametrize("name", NAMES)
def test_no_target_layer_equals_the_chosen_layer_by_hand(name, small_cnn, images):
    x = images(2, size=16)
    auto = make(name, small_cnn)
    got = auto(x, targets_of(name, 2))
    if METHODS[name].cls is FullGrad:  # FullGrad ignores target layers, given or not
        assert auto.layer_choice is None
        np.testing.assert_array_equal(got, make(name, small_cnn, [small_cnn.block2])(x, targets_of(name, 2)))
        return
    assert auto.layer_choice.name == "block2.2"
    assert auto.target_layers == [small_cnn.block2[2]] and auto.reshape_transform is None
    by_hand = make(name, small_cnn, [small_cnn.block2[2]])(x, targets_of(name, 2))
    np.testing.assert_allclose(got, by_hand, atol=1e-6)
    assert got.max() > 0.9


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "eigencam", "ablationcam"])
def test_the_seed_spelling_and_a_user_transform(name, small_cnn, images):
    x = images(1, size=16)
    seed_style = make(name, small_cnn, target_layer=small_cnn.block1)
    assert not seed_style.auto_target_layers and seed_style.target_layers == [small_cnn.block1]
    seen = []

    def transform(tensor):
        seen.append(tuple(tensor.shape))
        return tensor

    auto = make(name, small_cnn, reshape_transform=transform)
    got = auto(x)
    assert auto.target_layers == [small_cnn.block2[2]] and auto.reshape_transform is transform
    assert seen and seen[0] == (1, 16, 8, 8)
    np.testing.assert_allclose(got, make(name, small_cnn, [small_cnn.block2[2]])(x), atol=1e-6)


def test_a_new_input_shape_chooses_again_and_a_given_layer_always_wins(images):
    class Growing(nn.Module):
        """At 8x8 ``late``'s grid is 1x1 (so ``early`` is chosen), at 32x32 it is 2x2."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.early = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.late = nn.Conv2d(4, 4, 3, stride=8, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.late(self.early(x)).mean(dim=(2, 3)))

    model = Growing().eval()
    cam = GradCAM(model)
    cam(images(1, size=8))
    assert cam.target_layers == [model.early]
    cam(images(1, size=32))
    assert cam.target_layers == [model.late]
    given = GradCAM(model, [model.early])
    given(images(1, size=32))
    assert given.target_layers == [model.early] and given.layer_choice is None


def test_the_model_is_untouched_by_an_automatic_call(used_model, images):
    before = model_snapshot(used_model)
    GradCAM(used_model)(images(2, size=16))
    assert_same_model(before, model_snapshot(used_model))


def test_finer_cam_hands_the_choice_to_its_base_method(images):
    model = SmallConvNet().eval()
    cam = make("finercam", model)
    cam(images(1, size=16))
    assert cam.base_cam.target_layers == [model.block2[2]]


def test_the_call_targets_decide_the_gradient_rule(images):
    class TwoHeads(nn.Module):
        """Class 0 reads ``a`` only; class 1 reads ``b`` (computed from ``a``)."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            a = self.a(x)
            return torch.stack([a.mean(dim=(1, 2, 3)), self.b(a).mean(dim=(1, 2, 3))], dim=1)

    model = TwoHeads().eval()
    for category, layer in ((0, model.a), (1, model.b)):  # one of them is not the top class
        layer_search.clear_cache()
        cam = GradCAM(model)
        cam(images(1, size=8), [category])
        assert cam.target_layers == [layer]
    # the cache is kept per class: one CAM object asked for class 1 then class 0 (same input shape)
    # explains each at its own layer, never class 0 at class 1's layer (a blank map there)
    cam = GradCAM(model)
    for category, layer in ((1, model.b), (0, model.a), (1, model.b)):
        cams = cam(images(1, size=8), [category])
        assert cam.target_layers == [layer] and cams.max() > 0
