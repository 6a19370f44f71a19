"""pytorch_grad_cam._core.caller: the library's warnings name the line of the caller's code, however
deep the call (aug_smooth's views, SmoothGrad-CAM++'s noisy copies, FullGrad's own gradients)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pytorch_grad_cam import FullGrad, GradCAM, SmoothGradCAMPlusPlus


class _SideBranch(nn.Module):
    """``side`` runs but the scores do not use it (frozen weights: nothing else starts a graph)."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(3, 2, 1)
        self.side = nn.Conv2d(3, 2, 1)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)
        return self.main(x).mean((2, 3))


class _IgnoresInput(nn.Module):
    """Scores computed from a constant image: FullGrad's input gradient is None."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.ones_like(x)).mean((2, 3))


@pytest.mark.parametrize(
    "explain",
    [
        lambda model, x: GradCAM(model, [model.side])(x),
        lambda model, x: GradCAM(model, [model.side]).compute(x),
        lambda model, x: GradCAM(model, [model.side])(x, aug_smooth=True),
        lambda model, x: SmoothGradCAMPlusPlus(model, [model.side])(x),
    ],
    ids=["call", "compute", "aug_smooth", "smoothgrad++"],
)
def test_the_independent_scores_warning_names_the_callers_line(explain):
    model = _SideBranch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explain(model, torch.ones(1, 3, 4, 4))
    found = [w for w in caught if "do not depend on the target layers' outputs" in str(w.message)]
    assert found and {w.filename for w in found} == {__file__}  # the lambda's line, not the library's


@pytest.mark.parametrize("aug_smooth", [False, True])
def test_fullgrads_warning_names_the_callers_line(aug_smooth):
    model = _IgnoresInput()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FullGrad(model, [model.conv])(torch.ones(1, 3, 4, 4), aug_smooth=aug_smooth)
    found = [w for w in caught if "do not depend on the input" in str(w.message)]
    assert found and {w.filename for w in found} == {__file__}


class _TwoInputs(nn.Module):
    """``(image, extra)``: ``side`` runs on the image but the scores do not use it (a blank map)."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(3, 2, 1)
        self.side = nn.Conv2d(3, 2, 1)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        self.side(image)
        return self.main(image).mean((2, 3)) + extra.mean()


def test_a_blank_map_warning_on_several_inputs_names_the_callers_line():
    model = _TwoInputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        GradCAM(model, [model.side])((torch.ones(1, 3, 4, 4), torch.ones(1, 5)))
    found = [w for w in caught if str(w.message).startswith("blank map (image 0)")]
    assert found and {w.filename for w in found} == {__file__}
