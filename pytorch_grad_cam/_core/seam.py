"""The seam between a CAM call and the detection package, chosen once per call.

:func:`choose_seam` looks at the model and the targets without importing anything: a call whose model
holds no detector this library knows, and whose targets are no ``DetectionTarget``, gets
:data:`PLAIN` and never imports :mod:`pytorch_grad_cam.detection`. Any other call gets the detection
package's :class:`~pytorch_grad_cam.detection.seam.DetectionSeam`, which says how to bind the
targets, which forward to run (the fast paths) and how to read the boxes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.detectors import (
    DETECTOR_CLASSES,
    YOLO_WRAPPER,
    has_detection_targets,
    is_instance,
    loaded_classes,
)


def network_of(model: nn.Module) -> nn.Module:
    """The network to explain: an ultralytics ``YOLO`` object's ``.model``, any other model itself."""
    if not is_instance(model, (YOLO_WRAPPER,)):
        return model
    from pytorch_grad_cam.detection.outputs import network_of as yolo_network

    return yolo_network(model)


def _may_hold_detections(outputs: Any) -> bool:
    """Whether a model output has a mapping with boxes in it (torchvision's or DETR's detections)."""
    if isinstance(outputs, Mapping):
        return "boxes" in outputs or "pred_boxes" in outputs
    if isinstance(outputs, (list, tuple)):
        return any(_may_hold_detections(item) for item in outputs)
    return False


class PlainSeam:
    """The seam of a call with nothing of a detector: every step is the classifier's."""

    #: whether this call runs the detection package
    detection = False

    def start(self, model: nn.Module, targets: Sequence[Any] | None, *, aug_smooth: bool) -> None:
        """Prepare the targets for a new call (nothing to do)."""

    def forward(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        *,
        track_gradients: bool,
        targets: Sequence[Any] | None,
    ) -> contextlib.AbstractContextManager:
        """The context one forward runs in: none."""
        return contextlib.nullcontext()

    def default_targets(self, model: nn.Module, outputs: Any, input_tensor: torch.Tensor) -> list | None:
        """``targets=None`` on an output that holds detections (a detector wrapped in a module the
        lookup does not know): one target per image for its boxes; None for any other output."""
        if not _may_hold_detections(outputs):
            return None
        return _detection_seam(model, fast_paths=False).default_targets(model, outputs, input_tensor)

    def bind(
        self, targets: Sequence[Any], outputs: Any, input_tensor: torch.Tensor, model: nn.Module
    ) -> None:
        """Bind detection targets made by :meth:`default_targets`; other targets need nothing."""
        if has_detection_targets(targets):
            _detection_seam(model, fast_paths=False).bind(targets, outputs, input_tensor, model)

    def default_layers(self, model: nn.Module) -> None:
        """No detector here: the layer search decides."""
        return None


#: the seam of every call that needs no detection code
PLAIN = PlainSeam()


def _detection_seam(model: nn.Module, *, fast_paths: bool) -> Any:
    from pytorch_grad_cam.detection.seam import DetectionSeam

    return DetectionSeam(fast_paths=fast_paths)


def choose_seam(model: nn.Module, targets: Sequence[Any] | None, *, fast_paths: bool = True) -> Any:
    """The seam of one call: :data:`PLAIN`, or the detection package's for a detector or its targets.

    Args:
        model: the network (after :func:`network_of`).
        targets: the call's targets (None: the model's default).
        fast_paths: whether a detector's gradient forward may take a fast path (the same gradients,
            less work); False runs the plain definition.
    """
    detectors = loaded_classes(DETECTOR_CLASSES)
    if has_detection_targets(targets) or any(isinstance(m, detectors) for m in model.modules()):
        return _detection_seam(model, fast_paths=fast_paths)
    return PLAIN
