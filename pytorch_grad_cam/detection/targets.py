"""Detection targets: the score of given boxes in a detector's output (torchvision, YOLO, DETR).

:class:`DetectionTarget` explains boxes given as labels and ``(x1, y1, x2, y2)`` input pixels. It
reads every family of :mod:`pytorch_grad_cam.detection.outputs`, matches each box to the model's
output by IoU and class, and scores it by the class probability there (optionally plus the IoU of
the predicted box with the given one, which is differentiable through the box regression).

BaseCAM *binds* the targets to the unperturbed output before any method scores them
(:func:`bind_detection_targets`): a box that matches nothing then raises a ``ValueError`` naming
the box and the best IoU found. Once bound, a YOLO/DETR box stays on its anchor/query (perturbed
inputs, e.g. ScoreCAM's masks, are scored at the same slot) and a torchvision box is matched again
on each output, scoring 0 if a perturbed input no longer yields it.

Boxes are compared with :func:`match_iou`: the IoU of the boxes with every side shorter than one
input pixel widened to one pixel about its centre. It equals the plain IoU for boxes whose sides are
a pixel or longer, and is never 0/0: a box of zero width or height (an untrained FCOS predicts
many) matches the same box, or one a float rounding away, with an IoU near 1.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.outputs import sample_output, tensors_in
from pytorch_grad_cam.detection import outputs as D
from pytorch_grad_cam.detection.layers import detector_target_layers

#: The side, in input pixels, below which :func:`match_iou` widens a box: the input's resolution.
MIN_SIDE = 1.0


def match_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor, min_side: float = MIN_SIDE) -> torch.Tensor:
    """The IoU by which detection targets match boxes: defined for boxes of zero width or height.

    Every side shorter than ``min_side`` is widened to ``min_side`` about its centre, then the
    plain IoU (:func:`~pytorch_grad_cam.detection.outputs.box_iou`) is taken. Boxes whose sides are
    all at least ``min_side`` get exactly their plain IoU; a box of zero area (a point or a line)
    has IoU 1 with itself and near 1 with a copy moved by float rounding, where the plain IoU is
    0/0. A box with a non-finite coordinate has IoU 0 with everything. Differentiable in the boxes
    (a widened side's length is fixed, its centre still moves).

    Args:
        boxes_a: ``(N, 4)`` ``(x1, y1, x2, y2)``.
        boxes_b: ``(M, 4)``.
        min_side: the shortest side measured, in the boxes' units (> 0).

    Returns:
        ``(N, M)`` in [0, 1].
    """

    def widened(boxes: torch.Tensor) -> torch.Tensor:
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        short = (boxes[:, 2:] - boxes[:, :2] < min_side).repeat(1, 2)
        return torch.where(short, torch.cat([centre - min_side / 2, centre + min_side / 2], dim=1), boxes)

    ious = D.box_iou(widened(boxes_a), widened(boxes_b))
    finite = torch.isfinite(boxes_a).all(dim=1)[:, None] & torch.isfinite(boxes_b).all(dim=1)[None, :]
    return torch.where(finite & torch.isfinite(ious), ious, torch.zeros_like(ious))


def _as_boxes(boxes: Any) -> torch.Tensor:
    value = torch.as_tensor(
        boxes if isinstance(boxes, torch.Tensor) else np.asarray(boxes, dtype=np.float32)
    ).float()
    if value.dim() == 1 and value.numel() == 4:
        value = value.unsqueeze(0)
    if value.dim() != 2 or value.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) as (x1, y1, x2, y2); got {tuple(value.shape)}")
    value = value.detach().cpu()
    for k, box in enumerate(value.tolist()):
        if not all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(
                f"boxes must be finite (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2 (corners, not x, y, "
                f"width, height); box {k} is {box}"
            )
    return value


def _as_labels(labels: Any, count: int) -> list[int]:
    values = labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"labels must be int class indices; got {value!r}")
    if len(values) != count:
        raise ValueError(f"got {len(values)} labels for {count} boxes; pass one label per box")
    return [int(value) for value in values]


class DetectionTarget:
    """The summed score of boxes in one image's detector output.

    Each box ``(label, x1, y1, x2, y2)`` (input pixels) is matched as follows:

    - torchvision (a final list): the detection with the same label and the highest IoU with the box.
    - YOLO / DETR (one prediction per anchor/query): among the slots whose box has IoU at least
      ``iou_threshold`` with the given box, the one with the highest probability of the label,
      the slot the detector's own NMS would keep. Boxes from :func:`predictions_to_targets` come
      with their slots already.

    The score of a box is its class probability at the match, plus the IoU of the predicted box
    with the given one if ``add_iou``. The target is the sum over the boxes. IoU here is
    :func:`match_iou` (sides under one pixel count as one pixel), so boxes of zero width or height
    match too.

    Args:
        labels: one class index per box (as the model numbers its classes).
        boxes: ``(K, 4)`` ``(x1, y1, x2, y2)`` in input pixels.
        iou_threshold: the least IoU of a match.
        add_iou: add the predicted box's IoU with the given box to its score.
        image_size: ``(H, W)`` of the input, for DETR's normalised boxes when the target is used
            outside a CAM (a CAM passes the input's size when it binds the target).
        no_object_class: DETR-style outputs: whether the last logit is "no object". None decides by
            the output class (see :data:`pytorch_grad_cam.detection.outputs.NO_OBJECT_CLASS_OUTPUTS`).
        slots: ``(K,)`` anchor/query indices, fixing the matches in a YOLO/DETR output.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        boxes: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
        *,
        iou_threshold: float = 0.5,
        add_iou: bool = False,
        image_size: Sequence[int] | None = None,
        no_object_class: bool | None = None,
        slots: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        self.boxes = _as_boxes(boxes)
        self.labels = _as_labels(labels, self.boxes.shape[0])
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
            raise TypeError(f"iou_threshold must be a number; got {iou_threshold!r}")
        if not isinstance(add_iou, bool):
            raise TypeError(f"add_iou must be True or False; got {add_iou!r}")
        self.iou_threshold = float(iou_threshold)
        self.add_iou = add_iou
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.no_object_class = no_object_class
        self.given_slots = None if slots is None else torch.as_tensor(slots, dtype=torch.long).flatten().cpu()
        if self.given_slots is not None and self.given_slots.numel() != len(self.labels):
            raise ValueError(f"got {self.given_slots.numel()} slots for {len(self.labels)} boxes")
        #: the slot of each box in a YOLO/DETR output: given, or found by :meth:`bind`
        self.slots = self.given_slots
        self._bound = False

    def bind(self, output: Any, image_size: Sequence[int]) -> None:
        """Match every box on the unperturbed output of its image, and keep the match.

        Raises:
            ValueError: a box that matches nothing (its label, box and the best IoU are named).
        """
        self.image_size = (int(image_size[0]), int(image_size[1]))
        family = D.output_family(output)
        self.slots = self.given_slots
        if family in ("yolo", "detr") and self.slots is None:
            slot_boxes, probabilities = self._slots(output)
            self.slots = torch.tensor(
                [self._best_slot(slot_boxes, probabilities, k) for k in range(len(self.labels))],
                dtype=torch.long,
            )
        elif family == "torchvision":
            for k in range(len(self.labels)):
                self._torchvision_match(output, k, strict=True)
        self._bound = True

    @property
    def bound(self) -> bool:
        """Whether :meth:`bind` matched the boxes (and :meth:`unbind` has not been called since)."""
        return self._bound

    def unbind(self) -> None:
        """Forget the matches :meth:`bind` found (slots given to the constructor are kept)."""
        self.slots = self.given_slots
        self._bound = False

    def __call__(self, model_output: Any) -> torch.Tensor:
        """The summed score of the boxes in one image's output (a scalar tensor)."""
        family = D.output_family(model_output)
        if family is None:
            raise ValueError(
                "DetectionTarget expects one image's detector output: torchvision's dict of boxes, labels "
                "and scores, a raw YOLO (4 + C, anchors) tensor, or a DETR-style output with logits and "
                f"pred_boxes; got {type(model_output).__name__}"
            )
        if family == "torchvision":
            total = model_output["scores"].new_zeros(())
            for k in range(len(self.labels)):
                match = self._torchvision_match(model_output, k, strict=not self._bound)
                if match is not None:
                    total = total + self._score(
                        model_output["scores"][match], model_output["boxes"][match], k
                    )
            return total
        slot_boxes, probabilities = self._slots(model_output)
        if self.slots is None:
            slots = [self._best_slot(slot_boxes, probabilities, k) for k in range(len(self.labels))]
        else:
            slots = self.slots.tolist()
        total = probabilities.new_zeros(())
        for k, slot in enumerate(slots):
            if not 0 <= slot < probabilities.shape[0]:
                raise ValueError(f"slot {slot} of box {k} is not among the {probabilities.shape[0]} slots")
            total = total + self._score(probabilities[slot, self.labels[k]], slot_boxes[slot], k)
        return total

    def _score(self, probability: torch.Tensor, predicted_box: torch.Tensor, k: int) -> torch.Tensor:
        if not self.add_iou:
            return probability
        reference = self.boxes[k : k + 1].to(device=predicted_box.device, dtype=predicted_box.dtype)
        return probability + match_iou(reference, predicted_box[None])[0, 0]

    def _slots(self, output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        slot_boxes, probabilities = D.slot_predictions(output, self.image_size, self.no_object_class)
        for label in set(self.labels):
            if not 0 <= label < probabilities.shape[1]:
                raise ValueError(
                    f"label {label} is out of range for a detector with {probabilities.shape[1]} classes"
                )
        return slot_boxes, probabilities

    def _describe(self, k: int) -> str:
        return f"box {k} (label {self.labels[k]}, {[round(v, 1) for v in self.boxes[k].tolist()]})"

    def _ious(self, k: int, boxes: torch.Tensor) -> torch.Tensor:
        """``(N,)`` :func:`match_iou` of box ``k`` with each of ``boxes`` (detached)."""
        boxes = boxes.detach()
        reference = self.boxes[k : k + 1].to(device=boxes.device, dtype=boxes.dtype)
        return match_iou(reference, boxes)[0]

    def _best_slot(self, slot_boxes: torch.Tensor, probabilities: torch.Tensor, k: int) -> int:
        ious = self._ious(k, slot_boxes)
        close = ious >= self.iou_threshold
        if not bool(close.any()):
            best = float(ious.max()) if ious.numel() else 0.0
            raise ValueError(
                f"{self._describe(k)} matches no prediction of the model: the best IoU is {best:.3f}, "
                f"below iou_threshold={self.iou_threshold}"
            )
        label_scores = torch.where(
            close, probabilities[:, self.labels[k]].detach(), torch.full_like(ious, -1.0)
        )
        # the highest score; among equal scores, the highest IoU
        best_scores = label_scores == label_scores.max()
        return int(torch.where(best_scores, ious, torch.full_like(ious, -1.0)).argmax())

    def _torchvision_match(self, output: Any, k: int, *, strict: bool) -> int | None:
        boxes = output["boxes"]
        ious = self._ious(k, boxes)
        same = output["labels"] == self.labels[k]
        candidates = torch.where(same, ious, torch.full_like(ious, -1.0))
        if candidates.numel() and float(candidates.max()) >= self.iou_threshold:
            return int(candidates.argmax())
        if not strict:
            return None
        best = float(candidates.max()) if bool(same.any()) else 0.0
        raise ValueError(
            f"{self._describe(k)} matches no detection of the model: the best IoU with a label-"
            f"{self.labels[k]} detection is {best:.3f}, below iou_threshold={self.iou_threshold} "
            f"({int(same.sum())} of {boxes.shape[0]} detections have that label)"
        )

    def __repr__(self) -> str:
        return (
            f"DetectionTarget(labels={self.labels}, {self.boxes.shape[0]} boxes, "
            f"iou_threshold={self.iou_threshold}, add_iou={self.add_iou})"
        )


def predictions_to_targets(
    detections: D.Detections, *, each_box: bool = False, add_iou: bool = False
) -> list[DetectionTarget]:
    """Targets for the boxes a detector predicted in one image.

    Args:
        detections: from :func:`pytorch_grad_cam.detection.outputs.predicted_detections`.
        each_box: one target per box (to explain each box in its own map: repeat the image once
            per target) instead of one target for all of them.
        add_iou: see :class:`DetectionTarget`.

    Returns:
        ``[DetectionTarget]`` or one per box; raw outputs' targets keep their slots.
    """
    boxes, labels = detections.boxes.detach().cpu(), detections.labels.cpu()
    slots = None if detections.slots is None else detections.slots.cpu()
    if not each_box:
        return [DetectionTarget(labels, boxes, add_iou=add_iou, slots=slots)]
    return [
        DetectionTarget(
            labels[k : k + 1],
            boxes[k : k + 1],
            add_iou=add_iou,
            slots=None if slots is None else slots[k : k + 1],
        )
        for k in range(boxes.shape[0])
    ]


def bind_detection_targets(
    targets: Sequence[Any], outputs: Any, input_tensor: torch.Tensor, model: nn.Module | None = None
) -> None:
    """Bind each unbound :class:`DetectionTarget` to its image's output (see the module docstring).

    BaseCAM calls this on every view it runs and :func:`unbind_detection_targets` when a call
    starts, so the targets stay bound to the first (unperturbed) view of the call: later views
    (SmoothGrad's noisy copies) are scored at the same matches. With ``model``, a YOLO network's
    output is checked first (:func:`~pytorch_grad_cam.detection.outputs.check_yolo_output`).
    """
    if model is not None and any(isinstance(target, DetectionTarget) for target in targets):
        D.check_yolo_output(model, outputs)
    batch = input_tensor.shape[0]
    for index, target in enumerate(targets):
        if isinstance(target, DetectionTarget) and not target.bound:
            target.bind(sample_output(outputs, index, batch), tuple(input_tensor.shape[-2:]))


def refuse_aug_smooth(model: nn.Module, targets: Sequence[Any] | None) -> None:
    """``aug_smooth`` flips the image, and a box does not flip with it: refuse it for detectors.

    Raises:
        ValueError: a :class:`DetectionTarget` among ``targets``, or ``targets=None`` for a detector
            :func:`~pytorch_grad_cam.detection.layers.detector_target_layers` knows.
    """
    if any(isinstance(target, DetectionTarget) for target in targets or ()) or (
        targets is None and detector_target_layers(model) is not None
    ):
        raise ValueError(
            "aug_smooth=True averages horizontally flipped views, but the boxes a detection target explains "
            "stay where they are in the unflipped image; call the CAM with aug_smooth=False for a detector"
        )


def unbind_detection_targets(targets: Sequence[Any] | None) -> None:
    """Forget the matches of each :class:`DetectionTarget` (a new CAM call binds them again)."""
    for target in targets or ():
        if isinstance(target, DetectionTarget):
            target.unbind()


def default_detection_targets(
    model: nn.Module, outputs: Any, input_tensor: torch.Tensor
) -> list[DetectionTarget] | None:
    """``targets=None`` for a detector: per image, one target for every box the model predicts.

    The map of image ``i`` explains the sum of the scores of all the boxes of
    :func:`~pytorch_grad_cam.detection.outputs.predicted_detections` (the detector's own threshold and
    NMS). For one map per box use :func:`predictions_to_targets` with ``each_box=True``.

    Returns:
        one target per image, or None when the output is not a detector's.

    Raises:
        ValueError: an image where the model predicts no box.
    """
    batch = input_tensor.shape[0]
    if not tensors_in(outputs):
        return None
    first = sample_output(outputs, 0, batch)
    family = D.output_family(first)
    if family is None or (family == "yolo" and not D.is_yolo_network(model)):
        return None
    D.check_yolo_output(model, outputs)
    targets = []
    for index in range(batch):
        output = sample_output(outputs, index, batch)
        found = D.predicted_detections(output, image_size=input_tensor.shape[-2:])
        if found.boxes.shape[0] == 0:
            raise ValueError(
                f"targets=None explains the boxes the detector predicts, but it predicts none in image "
                f"{index}; pass targets=[DetectionTarget(labels, boxes), ...]"
            )
        targets += predictions_to_targets(found)
    return targets


def reads_scores_only(targets: Sequence[Callable] | None) -> bool:
    """Whether the targets read a detector's class scores and never its boxes.

    True for None (a detector's default targets: :func:`default_detection_targets`, no ``add_iou``)
    and for :class:`DetectionTarget` s without ``add_iou``; False for anything else, whose reads are
    not known (a subclass of :class:`DetectionTarget` too: its ``__call__`` may read the boxes).
    A gradient forward may then skip the graph of a box branch
    (:mod:`~pytorch_grad_cam.detection.yolo_fastpath`).
    """
    return targets is None or all(type(t) is DetectionTarget and not t.add_iou for t in targets)
