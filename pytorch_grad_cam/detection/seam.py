"""The detection side of the seam: what a CAM call on a detector (or with detection targets) does."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam.detection import targets as T
from pytorch_grad_cam.detection.layers import DetectorLayers, detector_target_layers
from pytorch_grad_cam.detection.outputs import gradient_forward


class DetectionSeam:
    """How a detector's call binds its targets, runs its forward and reads its boxes.

    Args:
        fast_paths: whether a gradient forward may take a fast path
            (:func:`~pytorch_grad_cam.detection.outputs.gradient_forward`: the same gradients with
            less work); False runs the plain forward.

    Attributes:
        forwards: the contexts this seam's forwards ran in, in order (which fast path each took).
    """

    detection = True

    def __init__(self, *, fast_paths: bool = True) -> None:
        self.fast_paths = fast_paths
        self.forwards: list[contextlib.AbstractContextManager] = []

    def start(self, model: nn.Module, targets: Sequence[Any] | None, *, aug_smooth: bool) -> None:
        """A new call: detection targets match their boxes again; ``aug_smooth`` is refused."""
        T.unbind_detection_targets(targets)
        if aug_smooth:
            T.refuse_aug_smooth(model, targets)

    def forward(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        *,
        track_gradients: bool,
        targets: Sequence[Any] | None,
    ) -> contextlib.AbstractContextManager:
        """The context one forward runs in: a fast path where one applies and is allowed."""
        if self.fast_paths:
            context = gradient_forward(
                model,
                target_layers,
                track_gradients=track_gradients,
                scores_only=T.reads_scores_only(targets),
            )
        else:
            context = contextlib.nullcontext()
        self.forwards.append(context)
        return context

    def default_targets(self, model: nn.Module, outputs: Any, input_tensor: torch.Tensor) -> list | None:
        """``targets=None``: every box the detector predicts (None when the output is no detector's)."""
        return T.default_detection_targets(model, outputs, input_tensor)

    def bind(
        self, targets: Sequence[Any], outputs: Any, input_tensor: torch.Tensor, model: nn.Module
    ) -> None:
        """Bind each unbound detection target to its image's output."""
        T.bind_detection_targets(targets, outputs, input_tensor, model)

    def default_layers(self, model: nn.Module) -> DetectorLayers | None:
        """A known detector's default target layers and reshape transform, else None."""
        return detector_target_layers(model)
