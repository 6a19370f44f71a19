"""Bad values reach every method as one clear error, never as a silent blank or NaN map: NaN or inf
in the input or the model's output, targets that do not fit the batch or the classes, and a target
layer that is not the model's own (another instance, a copy)."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from conftest import HandViT, SmallConvNet, assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam._core.validation import check_finite_output
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

CNN_NAMES = sorted(name for name, info in METHODS.items() if not issubclass(info.cls, AttentionCAM))
ATTENTION_NAMES = sorted(name for name, info in METHODS.items() if issubclass(info.cls, AttentionCAM))


def _make(name: str, model: nn.Module, layers: list[nn.Module] | None):
    cls = METHODS[name].cls
    kwargs = {"seed": 0} if "seed" in inspect.signature(cls).parameters else {}
    return cls(model, layers, **kwargs)


class Poisoned(nn.Module):
    """A model whose output for image ``row`` is replaced by ``value`` (NaN or inf) in one class."""

    def __init__(self, model: nn.Module, row: int, value: float) -> None:
        super().__init__()
        self.model = model
        self.row = row
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        mask = torch.zeros_like(out, dtype=torch.bool)
        if x.shape[0] > self.row:
            mask[self.row, 1] = True
        return torch.where(mask, torch.full_like(out, self.value), out)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", CNN_NAMES)
def test_nan_or_inf_in_the_models_output_is_one_error_naming_the_image(name, value, images):
    inner = SmallConvNet().eval()
    model = Poisoned(inner, row=1, value=value)
    before = model_snapshot(model)
    with pytest.raises(
        ValueError, match=r"the model's output holds NaN or inf values for input_tensor image 1:"
    ):
        _make(name, model, [inner.block2])(images(2, size=12))
    assert_same_model(before, model_snapshot(model))


class NaNViT(HandViT):
    """:class:`HandViT` whose class-1 score is NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.cat([out[:, :1], torch.full_like(out[:, 1:], float("nan"))], dim=1)


@pytest.mark.parametrize("name", ATTENTION_NAMES)
def test_nan_in_a_vision_transformers_output_is_the_same_error(name):
    x = torch.tensor([[[[0.5, -1.0], [2.0, 0.25]]]])
    with pytest.raises(
        ValueError, match="the model's output holds NaN or inf values for input_tensor image 0"
    ):
        model = NaNViT().eval()
        if name == "legrad":  # LeGrad reads the blocks' tokens through a score function
            METHODS[name].cls(model, list(model.blocks), score_fn=lambda tokens: tokens[:, 0, :2])(x)
        _make(name, model, None)(x)


@pytest.mark.parametrize("name", CNN_NAMES)
def test_nan_or_inf_in_the_input_is_one_error(name, small_cnn, images):
    x = images(2, size=12)
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="input_tensor contains NaN or inf values"):
        _make(name, small_cnn, [small_cnn.block2])(x)


@pytest.mark.parametrize("name", CNN_NAMES)
def test_a_layer_of_another_instance_or_a_copy_is_one_error(name, small_cnn, images):
    twin = SmallConvNet().eval()  # the same architecture and weights: only the instance differs
    for layer in (twin.block2, copy.deepcopy(small_cnn).block2, nn.Conv2d(8, 16, 3)):
        with pytest.raises(ValueError, match=r"target_layers\[0\] \(\w+\) (never ran|is not a module)"):
            _make(name, small_cnn, [layer])(images(1, size=12))


@pytest.mark.parametrize("name", [n for n in CNN_NAMES if METHODS[n].cls.uses_targets])
def test_targets_that_do_not_fit_the_batch_or_the_classes_are_one_error_each(name, small_cnn, images):
    cam = _make(name, small_cnn, [small_cnn.block2])
    x = images(2, size=12)
    for targets, message in (
        ([ClassifierOutputTarget(0)] * 3, "targets has 3 entries but the batch has 2 images"),
        ([], "targets has 0 entries but the batch has 2 images"),
        ([ClassifierOutputTarget(0), ClassifierOutputTarget(5)], r"(category|class) 5 is out of range"),
        ([0, -6], r"targets\[1\] = -6: a class index must be >= 0"),
        ([ClassifierOutputTarget(-9)] * 2, r"(category|class) -9 is out of range"),
    ):
        with pytest.raises(ValueError, match=message):
            cam(x, targets)


def test_check_finite_output_reads_nested_outputs_and_names_the_images():
    good = torch.zeros(3, 4)
    check_finite_output({"logits": good, "aux": (good, torch.arange(3))}, 3)  # integers are not checked
    bad = good.clone()
    bad[0, 1] = bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="for input_tensor images 0, 2:"):
        check_finite_output({"logits": good, "aux": [good, bad]}, 3)
    with pytest.raises(ValueError, match=r"holds NaN or inf values: no CAM"):  # not per image
        check_finite_output(torch.tensor([float("inf")]), 3)
    assert np.isfinite(good.numpy()).all()


class SqrtHead(nn.Module):
    """A finite output whose gradient is NaN for an image whose first pixel is 99 (sqrt at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = SmallConvNet().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.block2(self.net.block1(x))
        keep = (x[:, :1, :1, :1] != 99).to(x.dtype)
        return self.net.fc((features * keep).mean((2, 3)).sqrt())


@pytest.mark.parametrize("name", [n for n in CNN_NAMES if METHODS[n].cls.uses_gradients])
def test_a_nan_gradient_behind_a_finite_output_is_one_error_naming_the_image(name, images):
    model = SqrtHead()
    x = images(2, size=12)
    x[1, 0, 0, 0] = 99
    assert bool(torch.isfinite(model(x)).all())
    image = "image [01]" if name == "smoothgradcam++" else "image 1"  # its noise moves the zero
    with pytest.raises(ValueError, match=f"gradient holds NaN or inf values for input_tensor {image}"):
        _make(name, model, [model.net.block2])(x, [0, 0])
