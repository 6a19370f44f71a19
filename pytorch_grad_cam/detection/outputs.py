"""Detector outputs: boxes, their overlap, and the detections a detector itself predicts.

Three families of detector output are read, recognised by their structure (one image's output,
the batch axis removed):

- ``"torchvision"``: a mapping with ``boxes`` ``(N, 4)`` (``x1, y1, x2, y2`` in input pixels),
  ``labels`` ``(N,)`` and ``scores`` ``(N,)``: torchvision's detectors after their own
  post-processing (score threshold, NMS).
- ``"yolo"``: a ``(4 + C, A)`` tensor, or a tuple whose first item is one: the raw head output of
  an ultralytics YOLOv5u/v8/11 ``DetectionModel`` before NMS, rows ``cx, cy, w, h`` (input pixels)
  then the ``C`` class probabilities (already through a sigmoid) of each of the ``A`` anchors.
- ``"detr"``: a mapping or HuggingFace ``ModelOutput`` with ``logits`` ``(Q, K)`` and
  ``pred_boxes`` ``(Q, 4)`` (``cx, cy, w, h`` normalised to the input size), one row per query.
  DETR, YOLOS and Table Transformer add a last "no object" class (softmax scores); Conditional,
  Deformable and RT-DETR have none (sigmoid scores).

The YOLO and DETR outputs have one prediction per anchor/query (a "slot"); the torchvision one is
already the final list. The library never imports ultralytics (AGPL): an ultralytics object is
recognised only when the user's program has imported ultralytics already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.loaded import loaded_class
from pytorch_grad_cam._core.modes import model_in_eval_mode
from pytorch_grad_cam._core.outputs import sample_output
from pytorch_grad_cam.detection.rcnn_fastpath import RCNNFastPath, fast_roi_heads
from pytorch_grad_cam.detection.yolo_fastpath import BoxBranchesWithoutGraph, yolo_box_branches

#: HuggingFace output classes whose last logit is the "no object" class (softmax scores).
NO_OBJECT_CLASS_OUTPUTS = frozenset(
    {"DetrObjectDetectionOutput", "YolosObjectDetectionOutput", "TableTransformerObjectDetectionOutput"}
)


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair of boxes given as ``(x1, y1, x2, y2)``.

    Args:
        boxes_a: ``(N, 4)``.
        boxes_b: ``(M, 4)``.

    Returns:
        ``(N, M)``; 0 where the union is empty.
    """
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]).clamp_min(0) * (boxes_a[:, 3] - boxes_a[:, 1]).clamp_min(0)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]).clamp_min(0) * (boxes_b[:, 3] - boxes_b[:, 1]).clamp_min(0)
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    sides = (bottom_right - top_left).clamp_min(0)
    intersection = sides[..., 0] * sides[..., 1]
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(
        union > 0, intersection / union.clamp_min(torch.finfo(union.dtype).tiny), torch.zeros_like(union)
    )


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` centre-size boxes ``(cx, cy, w, h)`` to corners ``(x1, y1, x2, y2)``."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_kept: int | None = None
) -> torch.Tensor:
    """Greedy non-maximum suppression: the indices kept, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``
    (as ``torchvision.ops.nms``, which this library does not require).

    Args:
        boxes: ``(N, 4)`` ``(x1, y1, x2, y2)``.
        scores: ``(N,)``.
        iou_threshold: the overlap above which the lower-scoring box goes.
        max_kept: stop after keeping this many boxes.

    Returns:
        ``(K,)`` int64 indices into ``boxes``.
    """
    order = scores.argsort(descending=True)
    ordered = boxes[order]
    suppressed = torch.zeros(order.numel(), dtype=torch.bool, device=boxes.device)
    kept = []
    for position in range(order.numel()):
        if bool(suppressed[position]):
            continue
        if max_kept is not None and len(kept) == max_kept:
            break
        kept.append(position)
        suppressed[position + 1 :] |= (
            box_iou(ordered[position : position + 1], ordered[position + 1 :])[0] > iou_threshold
        )
    return order[torch.tensor(kept, dtype=torch.long, device=boxes.device)]


class Detections(NamedTuple):
    """The detections of one image.

    Attributes:
        boxes: ``(N, 4)`` ``(x1, y1, x2, y2)`` in input pixels.
        labels: ``(N,)`` int64 classes.
        scores: ``(N,)`` class scores (probabilities).
        slots: ``(N,)`` int64 anchor/query of each detection in a raw (YOLO, DETR) output, or None
            for torchvision's final lists.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    slots: torch.Tensor | None = None


def network_of(model: nn.Module) -> nn.Module:
    """The network to explain: an ultralytics ``YOLO``/``Model`` wrapper gives its ``.model``.

    The wrapper's ``__call__`` runs its predictor (pre-processing, NMS, ``Results`` objects) and its
    ``train`` is a training run, so a CAM must run the ``DetectionModel`` inside it. Recognised by
    type, only when ultralytics is already imported; any other model is returned as it is.

    Raises:
        TypeError: an ultralytics wrapper that holds no network (e.g. an exported model file).
    """
    wrapper = loaded_class("ultralytics.engine.model", "Model")
    if wrapper is None or not isinstance(model, wrapper):
        return model
    network = model.model
    if not isinstance(network, nn.Module):
        raise TypeError(
            f"model is an ultralytics {type(model).__name__} without a PyTorch network (its .model is "
            f"{type(network).__name__}); load a .pt or .yaml model to explain it"
        )
    return network


def gradient_forward(
    model: nn.Module, target_layers: Sequence[nn.Module], *, track_gradients: bool, scores_only: bool = False
) -> contextlib.AbstractContextManager:
    """The context a CAM runs its forward pass in, for detectors that differentiate faster in one.

    With ``track_gradients``, a torchvision Faster/Mask R-CNN gets
    :class:`~pytorch_grad_cam.detection.rcnn_fastpath.RCNNFastPath` (its detections' graph holds only
    their own proposals' rows: the same gradients, without a backward over every proposal); with
    ``scores_only`` too (every target reads class scores only, never boxes), an ultralytics YOLO
    gets :class:`~pytorch_grad_cam.detection.yolo_fastpath.BoxBranchesWithoutGraph` (an ultralytics
    ``DetectionModel`` itself, not a module wrapping one); any other model,
    or a forward without gradients, a context that does nothing.
    """
    if not track_gradients:
        return contextlib.nullcontext()
    heads = fast_roi_heads(model, target_layers)
    if heads:
        return RCNNFastPath(heads)
    # only the DetectionModel itself: a wrapper's output (and its default targets) may mix the boxes in
    branches = yolo_box_branches(model, target_layers) if scores_only and is_yolo_network(model) else []
    return BoxBranchesWithoutGraph(branches) if branches else contextlib.nullcontext()


def is_yolo_network(model: nn.Module) -> bool:
    """Whether ``model`` is an ultralytics ``DetectionModel`` (ultralytics already imported)."""
    detection_model = loaded_class("ultralytics.nn.tasks", "DetectionModel")
    return detection_model is not None and isinstance(model, detection_model)


def check_yolo_output(model: nn.Module, outputs: Any) -> None:
    """Refuse a YOLO network whose batch output is not the raw head output this library reads.

    YOLOv5u/v8/11 return ``(B, 4 + classes, anchors)`` (alone or first in a tuple); an end-to-end
    head (YOLOv10, YOLO26) returns boxes already post-processed inside the network, which a box's
    class score cannot be read back from. Any other model passes.

    Raises:
        ValueError: a YOLO network with another output.
    """
    if not is_yolo_network(model):
        return
    head = model.model[-1]
    classes = int(head.nc)
    raw = outputs[0] if isinstance(outputs, tuple) and outputs else outputs
    # ``end2end``: ultralytics' flag (8.3 and later) of a head that post-processes inside the network
    end_to_end = bool(getattr(head, "end2end", False))
    if end_to_end or not isinstance(raw, torch.Tensor) or raw.dim() != 3 or raw.shape[1] != 4 + classes:
        shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise ValueError(
            f"this YOLO network returns {shape}, not the raw head output (B, 4 + {classes}, anchors) before "
            "NMS that detection targets read; end-to-end heads (YOLOv10, YOLO26) post-process inside the "
            "network and are not supported: use a YOLOv5u, v8 or 11 model"
        )


def output_family(output: Any) -> str | None:
    """``"torchvision"``, ``"yolo"`` or ``"detr"`` for one image's detector output, else None."""
    if isinstance(output, Mapping):
        if {"boxes", "labels", "scores"} <= set(output):
            return "torchvision"
        logits, boxes = output.get("logits"), output.get("pred_boxes")
        if isinstance(logits, torch.Tensor) and isinstance(boxes, torch.Tensor):
            return "detr"
        return None
    raw = output[0] if isinstance(output, tuple) and output else output
    if isinstance(raw, torch.Tensor) and raw.dim() == 2 and raw.shape[0] > 4:
        return "yolo"
    return None


def has_no_object_class(output: Any) -> bool:
    """Whether a DETR-style output's last logit is "no object" (see :data:`NO_OBJECT_CLASS_OUTPUTS`)."""
    return type(output).__name__ in NO_OBJECT_CLASS_OUTPUTS


def slot_predictions(
    output: Any, image_size: Sequence[int] | None = None, no_object_class: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every slot's box and class probabilities in a raw YOLO or DETR output of one image.

    Args:
        output: one image's output (see the module docstring).
        image_size: ``(H, W)`` of the input, to put DETR's normalised boxes in pixels.
        no_object_class: DETR-style only: whether the last logit is "no object" (softmax over all
            logits, last column dropped) or not (sigmoid). None decides from the output's class.

    Returns:
        ``(S, 4)`` ``(x1, y1, x2, y2)`` boxes in input pixels and ``(S, C)`` probabilities.
    """
    family = output_family(output)
    if family == "yolo":
        raw = output[0] if isinstance(output, tuple) else output
        return cxcywh_to_xyxy(raw[:4].transpose(0, 1)), raw[4:].transpose(0, 1)
    if family == "detr":
        if image_size is None:
            raise ValueError(
                "a DETR-style output has boxes normalised to the input size: pass image_size=(H, W)"
            )
        height, width = (float(side) for side in image_size)
        scale = output["pred_boxes"].new_tensor([width, height, width, height])
        boxes = cxcywh_to_xyxy(output["pred_boxes"] * scale)
        logits = output["logits"]
        if has_no_object_class(output) if no_object_class is None else no_object_class:
            return boxes, torch.softmax(logits, dim=-1)[:, :-1]
        return boxes, torch.sigmoid(logits)
    raise ValueError(
        f"expected a raw YOLO (4 + C, anchors) tensor or a DETR-style output with logits and pred_boxes; "
        f"got {type(output).__name__}"
    )


def predicted_detections(
    output: Any,
    *,
    image_size: Sequence[int] | None = None,
    score_threshold: float | None = None,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
    max_candidates: int = 30000,
) -> Detections:
    """The boxes the detector itself predicts for one image, as its own post-processing keeps them.

    - torchvision: the output as it is (the model applied its own score threshold and NMS);
      ``score_threshold`` drops more.
    - YOLO: per class, the anchors whose probability exceeds ``score_threshold`` (default 0.25),
      then NMS at ``iou_threshold`` (default 0.7) per class, at most ``max_detections``: the
      defaults of ultralytics' predictor.
    - DETR-style: every (query, class) whose probability exceeds ``score_threshold`` (default 0.5,
      HuggingFace's ``post_process_object_detection``); with a "no object" class only each query's
      best class. No NMS (the set prediction has none).

    Args:
        output: one image's output.
        image_size: ``(H, W)`` of the input (needed for DETR-style outputs).
        score_threshold: see above.
        iou_threshold: YOLO's NMS overlap.
        max_detections: the most detections kept (highest scores first).
        max_candidates: YOLO: the most (anchor, class) pairs above the threshold that go into NMS,
            the highest-scoring (ultralytics' ``max_nms``).

    Returns:
        the :class:`Detections`, highest score first; the slots are set for YOLO and DETR.
    """
    family = output_family(output)
    if family == "torchvision":
        keep = torch.ones_like(output["scores"], dtype=torch.bool)
        if score_threshold is not None:
            keep = output["scores"] > score_threshold
        order = output["scores"][keep].argsort(descending=True)[:max_detections]
        return Detections(
            output["boxes"][keep][order], output["labels"][keep][order].long(), output["scores"][keep][order]
        )
    boxes, probabilities = slot_predictions(output, image_size)
    threshold = score_threshold if score_threshold is not None else (0.25 if family == "yolo" else 0.5)
    if family == "detr" and has_no_object_class(output):
        best, label = probabilities.max(dim=1)
        candidate = torch.zeros_like(probabilities, dtype=torch.bool)
        candidate[torch.arange(label.numel()), label] = best > threshold
    else:
        candidate = probabilities > threshold
    slots, labels = candidate.nonzero(as_tuple=True)
    scores = probabilities[slots, labels]
    if scores.numel() > max_candidates:
        top = scores.topk(max_candidates).indices
        slots, labels, scores = slots[top], labels[top], scores[top]
    if family == "yolo" and slots.numel():
        # per-class NMS: boxes of different classes are moved apart so they never overlap
        offset = labels[:, None].to(boxes.dtype) * (boxes.abs().max() * 2 + 1)
        keep = nms(boxes[slots] + offset, scores, iou_threshold, max_detections)
        slots, labels, scores = slots[keep], labels[keep], scores[keep]
    order = scores.argsort(descending=True)[:max_detections]
    slots, labels = slots[order], labels[order]
    return Detections(boxes[slots], labels, scores[order], slots)


def model_detections(
    model: nn.Module,
    input_tensor: torch.Tensor,
    *,
    score_threshold: float | None = None,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
) -> list[Detections]:
    """Run a detector once (eval mode, no gradients) and give each image's predicted boxes.

    The model is used as a CAM uses it: an ultralytics ``YOLO`` object through its network
    (:func:`network_of`), every module in eval mode by its flag alone and restored afterwards (no
    ``train``/``eval`` of the model is called). The rules are :func:`predicted_detections`'.

    Args:
        model: a torchvision, ultralytics or HuggingFace detector.
        input_tensor: ``(B, 3, H, W)`` as the model takes it.
        score_threshold: see :func:`predicted_detections`.
        iou_threshold: YOLO's NMS overlap.
        max_detections: the most detections per image.

    Returns:
        one :class:`Detections` per image.
    """
    network = network_of(model)
    with torch.no_grad(), model_in_eval_mode(network):
        outputs = network(input_tensor)
    check_yolo_output(network, outputs)
    batch = input_tensor.shape[0]
    return [
        predicted_detections(
            sample_output(outputs, index, batch),
            image_size=input_tensor.shape[-2:],
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
        )
        for index in range(batch)
    ]
