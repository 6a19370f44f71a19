"""Which detectors and targets the detection package serves, looked up by name and never imported.

A model can only be an instance of a class whose module is loaded: these lookups cost no import (of
torchvision's detection models, transformers, ultralytics, or this library's detection package).
"""

from __future__ import annotations

from typing import Any, Sequence

from pytorch_grad_cam._core.loaded import loaded_class

#: torchvision detector classes whose ``backbone`` returns the feature pyramid (a dict of maps)
TORCHVISION_DETECTORS = (
    ("torchvision.models.detection.generalized_rcnn", "GeneralizedRCNN"),  # Faster/Mask/Keypoint R-CNN
    ("torchvision.models.detection.retinanet", "RetinaNet"),
    ("torchvision.models.detection.fcos", "FCOS"),
    ("torchvision.models.detection.ssd", "SSD"),  # SSD300 and SSDlite
)
#: HuggingFace detection transformers whose ``model.input_projection`` maps the backbone's last
#: feature map to the encoder's width
DETR_MODELS = (
    ("transformers.models.detr.modeling_detr", "DetrForObjectDetection"),
    ("transformers.models.conditional_detr.modeling_conditional_detr", "ConditionalDetrForObjectDetection"),
)
#: HuggingFace RT-DETR: ``model.decoder_input_proj`` holds one projection per hybrid-encoder level
RT_DETR_MODELS = (
    ("transformers.models.rt_detr.modeling_rt_detr", "RTDetrForObjectDetection"),
    ("transformers.models.rt_detr_v2.modeling_rt_detr_v2", "RTDetrV2ForObjectDetection"),
)
#: ultralytics' detection network and the ``YOLO``/``Model`` object that wraps one
YOLO_NETWORK = ("ultralytics.nn.tasks", "DetectionModel")
YOLO_WRAPPER = ("ultralytics.engine.model", "Model")
#: every detector class the detection package serves
DETECTOR_CLASSES = (*TORCHVISION_DETECTORS, *DETR_MODELS, *RT_DETR_MODELS, YOLO_NETWORK)
_DETECTION_TARGET = ("pytorch_grad_cam.detection.targets", "DetectionTarget")


def loaded_classes(classes: Sequence[tuple[str, str]]) -> tuple[type, ...]:
    """The classes among the ``(module, class)`` pairs whose module is already imported."""
    found = (loaded_class(module_name, class_name) for module_name, class_name in classes)
    return tuple(cls for cls in found if cls is not None)


def is_instance(value: object, classes: Sequence[tuple[str, str]]) -> bool:
    """Whether ``value`` is an instance of one of the ``(module, class)`` pairs already imported."""
    return isinstance(value, loaded_classes(classes))


def has_detection_targets(targets: Sequence[Any] | None) -> bool:
    """Whether any target is a ``DetectionTarget`` (none can be while its module is not imported)."""
    return any(is_instance(target, (_DETECTION_TARGET,)) for target in targets or ())
