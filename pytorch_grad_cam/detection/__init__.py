"""Detectors: targets, output readers, default layers and the fast paths (torchvision, YOLO, DETR).

BaseCAM reaches this package only through the seam (:mod:`pytorch_grad_cam._core.seam`), and only for
a call that needs it: a classifier's call imports nothing from here.
"""

from pytorch_grad_cam.detection.layers import DetectorLayers, detector_target_layers
from pytorch_grad_cam.detection.outputs import (
    Detections,
    box_iou,
    model_detections,
    nms,
    predicted_detections,
)
from pytorch_grad_cam.detection.targets import DetectionTarget, predictions_to_targets

__all__ = [
    "DetectionTarget",
    "Detections",
    "DetectorLayers",
    "box_iou",
    "detector_target_layers",
    "model_detections",
    "nms",
    "predicted_detections",
    "predictions_to_targets",
]
