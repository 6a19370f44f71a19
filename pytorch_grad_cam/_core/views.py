"""One view of a call: its capture (forward, targets, gradients), its maps combined; aug_smooth's views."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.diagnostics import Finding, blank_images, diagnose_maps
from pytorch_grad_cam._core.layer_outputs import check_reached, to_spatial
from pytorch_grad_cam._core.outputs import detach_outputs
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target, check_finite_output, rejected_input
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients


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
            stacklevel=caller_level(),
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


def diagnosed_maps(
    model: nn.Module,
    target_layers: Sequence[nn.Module],
    method: type,
    input_tensor: torch.Tensor,
    maps: list[torch.Tensor],
    view: CapturedView,
) -> tuple[torch.Tensor, list[Finding]]:
    """A view's ``(B, *input spatial)`` maps in [0, 1] from each layer's raw ``(B, *s)`` map, and the
    findings of :func:`~pytorch_grad_cam._core.diagnostics.diagnose_maps` on them
    (:func:`combine_layer_maps`); ``method`` is the CAM class."""
    findings = diagnose_maps(
        model, target_layers, method, input_tensor, maps, view.activations, view.gradients, view.targets
    )
    return combine_layer_maps(maps, input_tensor.shape[2:], findings)


def spatial_gradients(
    raw: Sequence[Any], input_tensor: torch.Tensor, reshape_transform: Callable[[Any], torch.Tensor] | None
) -> list[torch.Tensor | None]:
    """Per target layer, the gradient a capture gave (in the layer's output structure) as a float32
    ``(B, C, *s)`` tensor (None where there is none), refused when not finite."""
    gradients = [
        None if g is None else to_spatial(g, index, input_tensor, "gradient", reshape_transform)
        for index, g in enumerate(raw)
    ]
    check_finite_output(gradients, input_tensor.shape[0], "the target scores' gradient")
    return gradients


def capture_view(
    model: nn.Module,
    target_layers: Sequence[nn.Module],
    input_tensor: torch.Tensor,
    targets: list[Target] | None,
    *,
    calls: list[int | None],
    seam: Any,
    reshape_transform: Callable[[Any], torch.Tensor] | None,
    default_targets: Callable[[Any], list[Target]] | None,
    differentiate: Callable[[ActivationsAndGradients, torch.Tensor], list[Any]] | None,
) -> CapturedView:
    """Run ``model`` once on ``input_tensor`` and collect what the target layers saw (the body of
    :meth:`BaseCAM.run_view <pytorch_grad_cam.base_cam.BaseCAM.run_view>`).

    Under ``torch.no_grad()``; with ``differentiate`` the target layers' outputs start a graph
    and ``differentiate(capture, summed_target_scores)`` gives their gradients.

    Args:
        model: the network.
        target_layers: the layers to capture.
        input_tensor: ``(B, C, *S)`` on the model's device.
        targets: one target per image, or None: the seam's default targets of this output, else
            ``default_targets(outputs)`` (None for a method without targets: they stay None).
        calls: per target layer, the call to capture (None: the layer must run once).
        seam: the call's :func:`~pytorch_grad_cam._core.seam.choose_seam`.
        reshape_transform: maps a layer's output (and gradient) to ``(B, C, *grid)``, or None.
        default_targets: the method's default targets of an output, or None when it uses none.
        differentiate: the per-layer gradients of the summed scores; None for a gradient-free view.

    Returns:
        the detached outputs, the targets, and per target layer the ``(B, C, *s)`` float32
        activations and gradients (None without ``differentiate``, or where it gave None), and
        the raw layer outputs (detached).
    """
    capture = ActivationsAndGradients(
        model, target_layers, track_gradients=differentiate is not None, calls=calls
    )
    fast = seam.forward(model, target_layers, track_gradients=differentiate is not None, targets=targets)
    outputs = forward_view(model, input_tensor, capture, fast)
    detached = detach_outputs(outputs)
    check_finite_output(detached, input_tensor.shape[0])
    check_reached(capture, target_layers, calls)
    activations = [
        to_spatial(raw, index, input_tensor, "output", reshape_transform)
        for index, raw in enumerate(capture.captured)
    ]
    if default_targets is not None and targets is None:
        targets = seam.default_targets(model, detached, input_tensor)
        if targets is None:
            targets = default_targets(detached)
    if targets is not None:
        seam.bind(targets, detached, input_tensor, model)
    gradients: list[torch.Tensor | None] = [None] * len(activations)
    if differentiate is not None:
        raw = differentiate(capture, summed_scores(targets, outputs, input_tensor.shape[0]))
        gradients = spatial_gradients(raw, input_tensor, reshape_transform)
    raw_outputs = [detach_outputs(raw) for raw in capture.captured]
    return CapturedView(detached, targets, activations, gradients, raw_outputs)
