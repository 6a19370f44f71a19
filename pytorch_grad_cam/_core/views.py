"""One view of a call: its forward, its scores, the combination of its layers' maps; aug_smooth's views."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.diagnostics import Finding, blank_images
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target, rejected_input


class CapturedView(NamedTuple):
    """What one forward (and backward) of a view gave: see :meth:`BaseCAM.run_view`."""

    outputs: Any
    targets: list[Target] | None
    activations: list[torch.Tensor]
    gradients: list[torch.Tensor | None]
    #: per target layer, its raw output (before ``reshape_transform``), detached
    layer_outputs: Sequence[Any] = ()


#: The test-time augmentations of ``aug_smooth=True``: (horizontal flip, multiplier). The
#: identity view comes first: its prediction picks the targets of every view.
AUG_SMOOTH_VIEWS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (1.0, 0.9, 1.1)
)


def augmented_maps(
    maps_of: Callable[[torch.Tensor], torch.Tensor], input_tensor: torch.Tensor
) -> torch.Tensor:
    """The mean of ``maps_of(view)`` over :data:`AUG_SMOOTH_VIEWS` (a flipped view's maps flipped back)."""
    total = None
    for flip, factor in AUG_SMOOTH_VIEWS:
        view = input_tensor * factor
        maps = maps_of(view.flip(-1) if flip else view)
        maps = maps.flip(-1) if flip else maps
        total = maps if total is None else total + maps
    return total / len(AUG_SMOOTH_VIEWS)


def forward_view(
    model: nn.Module,
    input_tensor: torch.Tensor,
    capture: contextlib.AbstractContextManager,
    context: contextlib.AbstractContextManager,
) -> Any:
    """The model's output on ``input_tensor``, run under ``no_grad`` inside ``capture`` and ``context``."""
    with capture, context, torch.no_grad():
        try:
            return model(input_tensor)
        except (RuntimeError, ValueError) as error:
            if input_tensor.dim() != 3:
                raise
            raise rejected_input(input_tensor, error) from error


def summed_scores(targets: Sequence[Target] | None, outputs: Any, batch_size: int) -> torch.Tensor:
    """The sum of the targets' scores, in the graph the capture started (warns when it is not)."""
    with torch.enable_grad():
        scores = target_scores(targets, outputs, batch_size)
    if not scores.requires_grad:
        warnings.warn(
            "the target scores do not depend on the target layers' outputs; the gradients and "
            "the gradient CAMs are all zero",
            stacklevel=6,  # the caller of the CAM
        )
    return scores.sum()


def combine_layer_maps(
    maps: list[torch.Tensor], size: Sequence[int], findings: list[Finding]
) -> tuple[torch.Tensor, list[Finding]]:
    """The call's maps from each layer's raw map (scaled, resized, averaged, scaled), and the blank-map
    findings marked by whether another layer's map filled them."""
    combined = CF.aggregate_layers([CF.layer_cam_to_unit(cam, size) for cam in maps])
    if findings and len(maps) > 1:  # another layer's map may fill a blank one
        shown = blank_images(combined)
        findings = [dataclasses.replace(f, in_result=bool(shown[f.image])) for f in findings]
    return combined, findings
