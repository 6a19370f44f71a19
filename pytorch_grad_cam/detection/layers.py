"""Default target layers and reshape transform of the detectors this library knows.

:func:`detector_target_layers` answers for torchvision's detectors, ultralytics' YOLO detection
models and HuggingFace's DETR, Conditional DETR and RT-DETR; it returns None for any other model
(a general layer finder can then try its own rules). Classes are recognised by type, from the
modules the user's program has already imported: this module imports neither torchvision,
transformers nor ultralytics.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from torch import nn

from pytorch_grad_cam._core.detectors import DETR_MODELS, RT_DETR_MODELS, TORCHVISION_DETECTORS, is_instance
from pytorch_grad_cam.detection.outputs import is_yolo_network, network_of
from pytorch_grad_cam.utils.reshape_transforms import multiscale_reshape_transform


class DetectorLayers(NamedTuple):
    """Target layers and the reshape transform that goes with them."""

    target_layers: list[nn.Module]
    reshape_transform: Callable[[Any], Any] | None


def detector_target_layers(model: nn.Module) -> DetectorLayers | None:
    """Sensible default target layers (and reshape transform) of a known detector.

    - torchvision Faster/Mask R-CNN, RetinaNet, FCOS, SSD300, SSDlite: ``[model.backbone]``, whose
      output is the feature pyramid (a dict of maps at several strides), with
      :func:`~pytorch_grad_cam.utils.reshape_transforms.multiscale_reshape_transform` (every level
      resized to the finest one's grid, channels concatenated).
    - ultralytics YOLO (the ``YOLO`` object or its ``DetectionModel``): the neck outputs the
      ``Detect`` head reads (strides 8, 16, 32), each its own ``(B, C, h, w)`` map: the CAM is
      the mean of their three maps. No reshape.
    - DETR, Conditional DETR: ``[model.model.input_projection]``, the backbone's last feature map
      projected to the transformer's width (a ``(B, d, h, w)`` map the encoder reads). For the
      encoder's own tokens use ``model.model.encoder.layers[-1]`` with
      :func:`~pytorch_grad_cam.utils.reshape_transforms.token_grid_reshape_transform`.
    - RT-DETR: the three ``model.model.decoder_input_proj`` levels (the hybrid encoder's fused
      maps, as the decoder reads them). No reshape.

    Returns:
        the layers and transform, or None for a model that is none of these.
    """
    model = network_of(model)
    if is_instance(model, TORCHVISION_DETECTORS):
        return DetectorLayers([model.backbone], multiscale_reshape_transform)
    if is_yolo_network(model):
        head = model.model[-1]
        return DetectorLayers([model.model[index] for index in head.f], None)
    if is_instance(model, DETR_MODELS):
        return DetectorLayers([model.model.input_projection], None)
    if is_instance(model, RT_DETR_MODELS):
        return DetectorLayers(list(model.model.decoder_input_proj), None)
    return None
