"""Several model inputs (tuple, list, dict): one map per image input with a layer on its path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.model_targets import ImageTextTarget


class TwoBranch(nn.Module):
    """Two image branches (1x1 convolutions), pooled, a linear head; optional metadata and mask.

    ``conv_a`` copies channel 0 of image ``a``; ``conv_b`` channel 0 of image ``b``. Class 1 reads
    only branch a's pooled channel 0 (weight 1): the class evidence lies in ``a`` alone, so the
    GradCAM of class 1 at ``conv_a`` is ``relu(a[:, 0])`` min-max scaled, and ``b``'s map is blank.
    """

    def __init__(self, keyword: bool = False) -> None:
        super().__init__()
        self.keyword = keyword
        self.conv_a = nn.Conv2d(3, 2, 1, bias=False)
        self.conv_b = nn.Conv2d(3, 2, 1, bias=False)
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            for conv in (self.conv_a, self.conv_b):
                conv.weight.zero_()
                conv.weight[0, 0] = 1.0
                conv.weight[1, 1] = 1.0
            self.head.weight.zero_()
            self.head.weight[1, 0] = 1.0  # class 1: branch a, channel 0
            self.head.weight[0, 3] = 1.0  # class 0: branch b, channel 1

    def features(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.conv_a(a).mean(dim=(2, 3))
        fb = self.conv_b(b).mean(dim=(2, 3))
        return torch.cat([fa, fb], dim=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(a, b))


class KeywordTwoBranch(TwoBranch):
    def forward(self, *, image: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image, other))


class ImageAndMetadata(nn.Module):
    """An image branch (pooled, a linear head) and metadata ``(B, F)`` added to the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.head = nn.Linear(3, 2, bias=False)
        self.meta = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 1.0  # channel 1 copies image channel 0
            self.head.weight.zero_()
            self.head.weight[1, 1] = 1.0  # class 1 reads channel 1
            self.meta.weight.fill_(0.5)

    def forward(self, image: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(image).mean(dim=(2, 3))) + self.meta(metadata)


class ImageAndMask(nn.Module):
    """The image times a mask, then a 1x1 convolution copying channel 0: both inputs feed ``conv``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 1.0

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.conv(image * mask).mean(dim=(2, 3))


def _scaled(x: torch.Tensor) -> np.ndarray:
    """relu, then min-max per image: the CAM's scaling of a (B, H, W) map."""
    x = x.clamp(min=0).double()
    flat = x.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return ((x - lo) / (hi - lo)).numpy()


def _images(batch: int = 2, size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g), torch.randn(batch, 3, size, size, generator=g)


@pytest.mark.parametrize("form", [tuple, list])
def test_positional_forms_known_answer_and_blank_branch(form: type) -> None:
    model = TwoBranch()
    a, b = _images()
    cam = GradCAM(model, target_layers=[model.conv_a, model.conv_b])
    with pytest.warns(UserWarning, match=r"input_tensor\[1\]"):
        maps = cam(form([a, b]), targets=[1, 1])
    assert type(maps) is form and len(maps) == 2
    np.testing.assert_allclose(maps[0], _scaled(a[:, 0]), atol=1e-6)
    assert np.all(maps[1] == 0)  # branch b carries no evidence of class 1: blank
    assert any("input_tensor[1]" in f.message for f in cam.diagnostics)
    assert not any("input_tensor[0]" in f.message for f in cam.diagnostics)


def test_dict_form_keyword_model() -> None:
    model = KeywordTwoBranch()
    a, b = _images()
    cam = GradCAM(model, target_layers=[model.conv_b, model.conv_a])
    maps = cam({"image": a, "other": b}, targets=[0, 0])
    assert list(maps) == ["image", "other"]
    # class 0 reads branch b's channel 1: b's map is relu(b[:, 1]), a's is blank
    np.testing.assert_allclose(maps["other"], _scaled(b[:, 1]), atol=1e-6)
    assert np.all(maps["image"] == 0)


def test_automatic_layer_per_input_and_caching() -> None:
    model = TwoBranch()
    a, b = _images()
    cam = GradCAM(model)
    with pytest.warns(UserWarning, match=r"input_tensor\[1\]"):
        maps = cam((a, b), targets=[1, 1])
    assert maps[1] is None  # no layer on b's path gets class 1's gradient: not explained
    assert cam.layer_choices[0].layer is model.conv_a and cam.layer_choices[0].name == "conv_a"
    np.testing.assert_allclose(maps[0], _scaled(a[:, 0]), atol=1e-6)
    plans = cam._several_cache
    assert len(plans) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = cam((a, b), targets=[1, 1])
    assert len(cam._several_cache) == 1
    np.testing.assert_array_equal(again[0], maps[0])
    # class 0 lies on b's path: the automatic layer for b is conv_b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zero = cam((a, b), targets=[0, 0])
    assert cam.layer_choices[1].layer is model.conv_b and zero[0] is None
    np.testing.assert_allclose(zero[1], _scaled(b[:, 1]), atol=1e-6)


def test_a_model_assigned_to_the_cam_gets_its_own_layers() -> None:
    """cam.model reassigned between two calls of one input shape: the second call searches the new
    model (the plans cached per shape named the old model's conv_a, which never ran: a ValueError)."""
    first, second = TwoBranch(), TwoBranch()
    with torch.no_grad():
        second.conv_a.weight[0, 0] = 0.0
        second.conv_a.weight[0, 2] = 1.0  # class 1 now reads a's channel 2
    a, b = _images()
    cam = GradCAM(first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam((a, b), targets=[1, 1])
        cam.model = second
        maps = cam((a, b), targets=[1, 1])
    assert cam.layer_choices[0].layer is second.conv_a
    np.testing.assert_allclose(maps[0], _scaled(a[:, 2]), atol=1e-6)


class ImageAndTexts(nn.Module):
    """CLIP's shape of model: images ``(B, 3, H, W)`` and a batch of texts of its own ``(T, L)``;
    ``logits_per_image[b, t]`` is the mean of image b's colour ``c`` for text t's word ``c``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> dict:
        colours = self.conv(pixel_values).mean(dim=(2, 3))  # (B, 3)
        words = nn.functional.one_hot(input_ids[:, 0], 3).float()  # (T, 3)
        return {"logits_per_image": colours @ words.T}


def test_as_many_texts_as_images() -> None:
    """Two images, two texts, ImageTextTarget(1): the search kept the texts whole (they were cut to
    the first, as a per-image input: 'the model scored 1 texts', refused). Text 1 reads red."""
    a, _ = _images()
    texts = torch.tensor([[2, 0], [0, 0]])  # text 0: blue, text 1: red
    maps = GradCAM(ImageAndTexts())({"pixel_values": a, "input_ids": texts}, targets=[ImageTextTarget(1)] * 2)
    np.testing.assert_allclose(maps["pixel_values"], _scaled(a[:, 0]), atol=1e-6)


def test_image_and_metadata() -> None:
    model = ImageAndMetadata()
    image = _images()[0]
    metadata = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]])
    for cam in (GradCAM(model, target_layers=[model.conv]), GradCAM(model)):
        maps = cam((image, metadata), targets=[1, 1])
        assert maps[1] is None
        np.testing.assert_allclose(maps[0], _scaled(image[:, 0]), atol=1e-6)


def test_image_and_mask_share_the_layer() -> None:
    model = ImageAndMask()
    image = _images()[0]
    mask = torch.zeros(2, 1, 6, 6)
    mask[:, :, :3] = 1.0
    maps = GradCAM(model, target_layers=[model.conv])((image, mask), targets=[1, 1])
    expected = _scaled(image[:, 0] * mask[:, 0])
    np.testing.assert_allclose(maps[0], expected, atol=1e-6)
    np.testing.assert_allclose(maps[1], expected, atol=1e-6)  # the same layer lies on both paths


@pytest.mark.parametrize(
    "method",
    [GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, EigenCAM, EigenGradCAM, GradCAMElementWise],
)
def test_batch_invariance_and_one_input_equivalence(method: type) -> None:
    model = TwoBranch()
    model.head.weight.data[1, 2] = 0.7  # class 1 reads both branches
    a, b = _images(batch=3, size=5, seed=3)
    cam = method(model, target_layers=[model.conv_a, model.conv_b])
    both = cam((a, b), targets=[1, 1, 1])
    for i in range(3):
        alone = cam((a[i : i + 1], b[i : i + 1]), targets=[1])
        for k in (0, 1):
            np.testing.assert_allclose(both[k][i], alone[k][0], atol=1e-5)
    # the map of input a equals the one-input CAM of the model with b held fixed
    fixed = _FixedB(model, b)
    one = method(fixed, target_layers=[model.conv_a])(a, targets=[1, 1, 1])
    np.testing.assert_allclose(both[0], one, atol=1e-6)
    smooth = cam((a, b), targets=[1, 1, 1], eigen_smooth=True)[0]
    np.testing.assert_allclose(
        smooth, method(fixed, [model.conv_a])(a, [1, 1, 1], eigen_smooth=True), atol=1e-6
    )


class _FixedB(nn.Module):
    def __init__(self, model: nn.Module, b: torch.Tensor) -> None:
        super().__init__()
        self.model, self.b = model, b

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.model(a, self.b)


def test_mismatched_batch_sizes_named() -> None:
    model = KeywordTwoBranch()
    a, b = _images()
    with pytest.raises(
        ValueError, match=r"input_tensor\['other'\] has batch size 1 but input_tensor\['image'\] has 2"
    ):
        GradCAM(model)({"image": a, "other": b[:1]})
    with pytest.raises(ValueError, match=r"input_tensor\[1\] has batch size 1 but input_tensor\[0\] has 2"):
        GradCAM(TwoBranch())((a, b[:1]))


def test_no_image_input_and_layer_off_every_path() -> None:
    model = TwoBranch()
    a, b = _images()
    with pytest.raises(ValueError, match="none of the inputs is an image"):
        GradCAM(model, target_layers=[model.conv_a])((a.flatten(1), torch.ones(2, 4, dtype=torch.long)))
    extra = nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match=r"target_layers\[1\] \(Conv2d\) depends on none"):
        GradCAM(model, target_layers=[model.conv_a, extra])((a, b), targets=[1, 1])


def test_every_other_registered_method_refuses_by_name() -> None:
    model = TwoBranch()
    a, b = _images()
    refused = 0
    for info in METHODS.values():
        if info.cls.several_inputs:
            continue
        try:
            cam = info.cls(model, target_layers=[model.conv_a])
        except (TypeError, ValueError):
            continue  # a method whose constructor takes other arguments
        with pytest.raises(NotApplicableError, match=f"{info.cls.__name__} does not take several inputs"):
            cam((a, b), targets=[1, 1])
        refused += 1
    assert refused >= 10


def test_perturbing_methods_and_aug_smooth_refused() -> None:
    model = TwoBranch()
    a, b = _images()
    with pytest.raises(NotApplicableError, match="ScoreCAM does not take several inputs"):
        ScoreCAM(model, target_layers=[model.conv_a])((a, b), targets=[1, 1])
    with pytest.raises(ValueError, match="aug_smooth=True"):
        GradCAM(model, target_layers=[model.conv_a])((a, b), targets=[1, 1], aug_smooth=True)


def test_model_left_as_it_was() -> None:
    model = TwoBranch().train()
    a, b = _images()
    flags = [m.training for m in model.modules()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GradCAM(model)((a, b), targets=[1, 1])
    assert [m.training for m in model.modules()] == flags
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert list(dict(model.named_children())) == ["conv_a", "conv_b", "head"]


def test_metadata_batch_mismatch_named_and_token_batch_allowed() -> None:
    model = ImageAndMetadata()
    image = _images()[0]
    with pytest.raises(ValueError, match=r"input_tensor\[1\] has batch size 3 but input_tensor\[0\] has 2"):
        GradCAM(model)((image, torch.zeros(3, 3)))
