"""A one-image call with no target layers lends its forward to the layer search
(``_core/first_forward.py``): the model runs twice on the first call, not three times, and the
maps and the choice are those of a call with the chosen layer given."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import LAYER_METHODS, assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam import GradCAM, layer_search
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.errors import BlankMapWarning
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class TwoStageNet(nn.Module):
    """conv-relu -> conv-bn-relu -> mean -> linear (a 1x1 conv upsampled: ``dense``), with ``side``: a
    map computed last and never used (no gradient), when ``with_side``; random weights from a fixed
    seed. With ``padding=0`` every map of a constant image is constant (a blank image)."""

    def __init__(self, *, with_side: bool = False, dense: bool = False, padding: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=padding), nn.ReLU())
        self.stage = nn.Sequential(
            nn.Conv2d(6, 8, 3, stride=2, padding=padding), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.side = nn.Conv2d(8, 2, 1) if with_side else None
        self.head = nn.Conv2d(8, 4, 1) if dense else nn.Linear(8, 4)
        self.dense = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stage(self.stem(x))
        if self.side is not None:
            self.side(features)  # a map the output does not depend on
        if self.dense:
            out = self.head(features)
            return nn.functional.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.head(features.mean(dim=(2, 3)))


def make(name, model, *args, **kwargs):
    cls = METHODS[name].cls
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", 0)
    return cls(model, *args, **kwargs)


def lends(cls: type) -> bool:
    """Whether the class's view is the plain one (the condition of ``BaseCAM._lendable_forward``)."""
    return cls.uses_gradients and all(
        getattr(cls, name) is getattr(BaseCAM, name)
        for name in ("_cams", "run_view", "differentiate", "default_targets")
    )


def forwards_of(model: nn.Module, call) -> tuple[object, list[int]]:
    """``call()``'s result and the batch size of every forward of ``model`` it ran."""
    batches = []
    handle = model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        return call(), batches
    finally:
        handle.remove()


def image(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", LAYER_METHODS)
@pytest.mark.parametrize("targets", [None, [2]], ids=["top-class", "given"])
def test_every_method_gives_the_maps_of_the_layer_given(name, targets):
    model, x = TwoStageNet().eval(), image()
    before = model_snapshot(model)
    cls = METHODS[name].cls
    auto = make(name, model)
    got, batches = forwards_of(model, lambda: auto(x, targets if cls.uses_targets else None))
    assert_same_model(before, model_snapshot(model))
    if auto.layer_choice is None:  # FullGrad: no target layer
        return
    assert auto.layer_choice.name == "stage.2"
    layer_search.clear_cache()
    wanted = None if targets is None or not cls.uses_targets else [ClassifierOutputTarget(2)]
    assert find_target_layer(model, x, wanted).name == "stage.2"
    given = make(name, model, [model.stage[2]])
    expected = given(x, targets if cls.uses_targets else None)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    if lends(cls):
        # the recorded forward and the lent one; before: recorded + the search's + the call's
        assert (
            batches[:2] == [1, 1]
            and len(batches) == len(forwards_of(model, lambda: given(x, targets))[1]) + 1
        )


def test_gradcam_runs_the_model_twice_and_a_later_call_once():
    model, x = TwoStageNet().eval(), image()
    cam = GradCAM(model)
    first, batches = forwards_of(model, lambda: cam(x))
    assert batches == [1, 1]  # was [1, 1, 1]
    later, batches = forwards_of(model, lambda: cam(x))
    assert batches == [1]
    np.testing.assert_array_equal(first, later)
    np.testing.assert_array_equal(first, GradCAM(model, [model.stage[2]])(x))


def test_a_vit_is_decided_and_explained_in_the_same_forward(tiny_vit):
    x = image(size=16)
    cam = GradCAM(tiny_vit)
    got, batches = forwards_of(tiny_vit, lambda: cam(x, [1]))
    assert batches == [1, 1]
    choice = cam.layer_choice
    assert choice.name == "blocks.1.norm1"
    expected = GradCAM(tiny_vit, [choice.layer], reshape_transform=choice.reshape_transform)(x, [1])
    np.testing.assert_array_equal(got, expected)


def test_a_layer_outside_the_first_group_falls_back_to_the_calls_own_forward():
    model, x = TwoStageNet(with_side=True).eval(), image()
    cam = GradCAM(model)
    got, batches = forwards_of(model, lambda: cam(x))
    # recorded, the lent forward (first group: ``side``, no gradient), the search's next group, the call's
    assert cam.layer_choice.name == "stage.2" and batches == [1, 1, 1, 1]
    np.testing.assert_array_equal(got, GradCAM(model, [model.stage[2]])(x))


def test_a_segmenter_with_no_targets_uses_its_default_targets():
    model, x = TwoStageNet(dense=True).eval(), image(seed=3)
    cam = GradCAM(model)
    got, batches = forwards_of(model, lambda: cam(x))
    assert cam.layer_choice.name == "stage.2" and batches == [1, 1]
    given = GradCAM(model, [model.stage[2]])
    np.testing.assert_array_equal(got, given(x))


def test_a_blank_image_is_decided_by_the_gradient_alone_and_not_cached():
    model, x = TwoStageNet(padding=0).eval(), torch.ones(1, 3, 16, 16)
    cam = GradCAM(model)
    with pytest.warns(BlankMapWarning):
        got, batches = forwards_of(model, lambda: cam(x))
    assert batches == [1, 1]
    assert layer_search.cached_choice(model, x) is None
    assert cam.layer_choice.name == "stage.2"
    with pytest.warns(BlankMapWarning):
        np.testing.assert_array_equal(got, GradCAM(model, [cam.layer_choice.layer])(x))


def test_aug_smooth_and_a_batch_do_not_lend():
    model = TwoStageNet().eval()
    _, batches = forwards_of(model, lambda: GradCAM(model)(image(), aug_smooth=True))
    assert batches == [1, 1, 1, 1, 1, 1, 1, 1]  # recorded, the search's, six views
    layer_search.clear_cache()
    x = torch.cat([image(0), image(1)])
    _, batches = forwards_of(model, lambda: GradCAM(model)(x))
    assert batches == [1, 1, 2]


class Embedder(nn.Module):
    """conv -> tokens ``(B, N, C)``: no class scores to explain with no targets."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x).flatten(2).transpose(1, 2))


def test_an_output_without_default_targets_says_so_as_with_the_layer_given():
    model, x = Embedder().eval(), image()
    with pytest.raises(Exception) as auto:
        GradCAM(model)(x)
    with pytest.raises(Exception) as given:
        GradCAM(model, [model.conv])(x)
    assert (type(auto.value), str(auto.value)) == (type(given.value), str(given.value))


class BoxNet(nn.Module):
    """conv-relu -> pooled -> per image two boxes shifted by the features and their scores, as
    torchvision's detectors return them (a list of dicts): no class scores, so the search scores
    the output by its energy, and the call's default targets are the boxes'."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.score = nn.Linear(8, 2)
        self.shift = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        pooled = self.features(x).mean(dim=(2, 3))
        corners = torch.tensor([[1.0, 1.0, 8.0, 8.0], [4.0, 4.0, 12.0, 12.0]])
        return [
            {
                "boxes": corners + self.shift(p).tanh(),
                "scores": self.score(p).sigmoid(),
                "labels": torch.tensor([1, 2]),
            }
            for p in pooled
        ]


def test_an_output_the_search_scores_by_its_energy_is_not_lent():
    model, x = BoxNet().eval(), image()
    cam = GradCAM(model)
    got, batches = forwards_of(model, lambda: cam(x))
    assert batches == [1, 1, 1]  # the search keeps its own score: its choice is find_target_layer's
    assert cam.layer_choice.name == "features.1"
    np.testing.assert_array_equal(got, GradCAM(model, [model.features[1]])(x))


class ScoredBoxNet(nn.Module):
    """conv-relu (``main``) -> class scores ``logits``; ``side`` (conv-relu on ``main``'s map, run
    last) -> one box per image, with its score and label, in the same dict: the search scores the top
    class (which ``side`` does not reach), a CAM's default targets are the boxes' (which it does)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.side = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 4)
        self.box = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.main(x)
        side = self.side(features).mean(dim=(2, 3))
        boxes = torch.tensor([[1.0, 1.0, 8.0, 8.0]]) + self.box(side).tanh()
        return {
            "logits": self.head(features.mean(dim=(2, 3))),
            "boxes": boxes[:, None],
            "scores": side[:, :1].sigmoid() + 0.5,
            "labels": torch.ones(x.shape[0], 1, dtype=torch.long),
        }


def test_default_targets_a_detector_seam_gives_keep_the_searchs_own_forward():
    model, x = ScoredBoxNet().eval(), image()
    assert find_target_layer(model, x).name == "main.1"  # the top class: ``side`` gets no gradient
    layer_search.clear_cache()
    cam = GradCAM(model)
    got, batches = forwards_of(model, lambda: cam(x))
    # recorded, the search's two groups (``side``: no gradient of the top class; ``main``), the call's
    assert cam.layer_choice.name == "main.1" and batches == [1, 1, 1, 1]
    np.testing.assert_array_equal(got, GradCAM(model, [model.main[1]])(x))


class TableFirstNet(TwoStageNet):
    """:class:`TwoStageNet` returning ``(table, logits)``: a ``(2, 4)`` table first, so a CAM's
    default targets (the first 2-D tensor's argmax per row) are two for one image."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        table = torch.tensor([[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0]])
        return table, super().forward(x)


def test_default_targets_that_are_not_one_per_image_keep_the_searchs_own_forward():
    model, x = TableFirstNet().eval(), image()
    cam = GradCAM(model)
    with pytest.raises(IndexError) as auto:
        forwards_of(model, lambda: cam(x))
    # the search's choice (its score: the logits' top class), then the call's own forward says why
    assert cam.layer_choice.name == "stage.2"
    assert layer_search.cached_choice(model, x).name == "stage.2"
    with pytest.raises(IndexError) as given:
        GradCAM(model, [model.stage[2]])(x)
    assert str(auto.value) == str(given.value)


class TokenEncoder(nn.Module):
    """conv patches -> two ``nn.TransformerEncoderLayer`` s -> mean of the tokens -> linear: the chosen
    layer (the last layer's ``norm2``) comes after the last attention, which torch runs by a fused
    fast path under ``no_grad`` only (the last bits of its output differ with gradients on)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(self.stem(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(dim=1))


def test_a_layer_computed_with_gradients_on_in_the_lent_forward_is_not_lent():
    model, x = TokenEncoder().eval(), image(1, size=32)
    cam = GradCAM(model)
    got, batches = forwards_of(model, lambda: cam(x))
    choice = cam.layer_choice
    assert choice.name == "encoder.layers.1.norm2"
    expected = GradCAM(model, [choice.layer], reshape_transform=choice.reshape_transform)(x)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, cam(x))  # the first call's maps are a later call's
    # the lent forward's graph started at the last attention's input, before the chosen layer: the
    # call ran its own forward (recorded, lent, the call's)
    assert batches == [1, 1, 1]
