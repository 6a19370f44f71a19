"""Boxes of zero width or height: match_iou's golden values, and DetectionTarget matching them in
every family (torchvision, YOLO, DETR), on hand-built outputs and on an untrained FCOS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam.detection.outputs import Detections, box_iou
from pytorch_grad_cam.detection.targets import DetectionTarget, match_iou, predictions_to_targets


def _iou(a, b):
    return float(
        match_iou(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))[0, 0]
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),  # sides of a pixel or more: the plain IoU
        ([10, 10, 10, 20], [10, 10, 10, 20], 1.0),  # a vertical line and itself
        # widened to [9.5, 10.5] and [9.75, 10.75] by 10 high: 7.5 / 12.5
        ([10, 10, 10, 20], [10.25, 10, 10.25, 20], 0.6),
        ([5, 5, 5, 5], [5, 5, 5, 5], 1.0),  # a point and itself
        ([5, 5, 5, 5], [7, 5, 7, 5], 0.0),  # two points two pixels apart
        ([5, 0, 5, 10], [0, 0, 10, 10], 0.1),  # a line inside a box: 10 of 100
        ([0, 0, 0.5, 4], [0, 0, 0.5, 4], 1.0),  # half a pixel wide: measured as one
        ([0, 0, math.nan, 4], [0, 0, 1, 4], 0.0),
        ([0, 0, math.inf, 4], [0, 0, math.inf, 4], 0.0),
    ],
)
def test_match_iou_golden(a, b, expected):
    assert _iou(a, b) == pytest.approx(expected, abs=1e-6)
    assert _iou(b, a) == pytest.approx(expected, abs=1e-6)


def test_match_iou_is_the_plain_iou_for_boxes_of_a_pixel_or_more():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(40, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 1 + torch.rand(40, 2, generator=generator) * 20], dim=1)
    assert torch.equal(match_iou(boxes[:20], boxes[20:]), box_iou(boxes[:20], boxes[20:]))


def test_match_iou_is_never_nan_and_differentiable_in_a_lines_position():
    line = torch.tensor([[3.0, 4.0, 3.0, 9.0]], requires_grad=True)
    iou = match_iou(torch.tensor([[3.25, 4.0, 3.25, 9.0]]), line)[0, 0]
    assert iou.item() == pytest.approx(0.6)
    (grad,) = torch.autograd.grad(iou, line)
    # moving the line right (both x) raises the overlap; its (fixed, widened) width has no gradient
    assert grad[0, 0] > 0 and grad[0, 2] > 0 and torch.isfinite(grad).all()


TORCHVISION = {
    "boxes": torch.tensor([[3.0, 4.0, 3.0, 9.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 20.0, 20.0]]),
    "labels": torch.tensor([1, 1, 2]),
    "scores": torch.tensor([0.4, 0.9, 0.2]),
}


def test_torchvision_zero_area_boxes_match_themselves_and_their_rounded_copies():
    torch.testing.assert_close(DetectionTarget([1], [[3, 4, 3, 9]])(TORCHVISION), torch.tensor(0.4))
    torch.testing.assert_close(DetectionTarget([2], [[20, 20, 20, 20]])(TORCHVISION), torch.tensor(0.2))
    # a copy moved by float rounding (a batched forward's last bits) still matches the line
    moved = {**TORCHVISION, "boxes": TORCHVISION["boxes"] + torch.tensor([1e-4, 0, 1e-4, 0])}
    torch.testing.assert_close(DetectionTarget([1], [[3, 4, 3, 9]])(moved), torch.tensor(0.4))
    # add_iou: the given line 0.1 px to the right overlaps the widened predicted one by 4.5 / 5.5
    target = DetectionTarget([1], [[3.1, 4, 3.1, 9]], add_iou=True)
    torch.testing.assert_close(target(TORCHVISION), torch.tensor(0.4 + 9 / 11))


def test_torchvision_zero_area_box_that_matches_nothing_names_the_best_iou():
    with pytest.raises(ValueError, match=r"box 0 \(label 2, \[30.0, 30.0, 30.0, 30.0\]\).* is 0.000"):
        DetectionTarget([2], [[30, 30, 30, 30]])(TORCHVISION)
    # the line lies inside the label-1 box [0, 0, 10, 10]: IoU 5 / 100, below 0.5
    with pytest.raises(ValueError, match=r"box 0 \(label 1, \[6.0, 4.0, 6.0, 9.0\]\).* is 0.050"):
        DetectionTarget([1], [[6, 4, 6, 9]])(TORCHVISION)


# cx, cy, w, h, then the probabilities of classes 0 and 1: anchor 0 is a vertical line, anchor 1 a
# 10 x 10 box around it that scores class 1 higher (IoU 0.1 with the line: no match)
YOLO_RAW = torch.tensor(
    [
        [20.0, 20.0, 40.0],
        [20.0, 20.0, 40.0],
        [0.0, 10.0, 4.0],
        [10.0, 10.0, 4.0],
        [0.1, 0.1, 0.5],
        [0.3, 0.9, 0.5],
    ]
)


def test_yolo_zero_width_anchor_is_matched():
    target = DetectionTarget([1], [[20, 15, 20, 25]])
    target.bind(YOLO_RAW, (64, 64))
    assert target.slots.tolist() == [0]
    torch.testing.assert_close(target(YOLO_RAW), torch.tensor(0.3))
    with pytest.raises(
        ValueError, match=r"box 0 \(label 1, \[24.0, 15.0, 24.0, 25.0\]\).* best IoU is 0.100"
    ):
        DetectionTarget([1], [[24, 15, 24, 25]]).bind(YOLO_RAW, (64, 64))


def test_detr_zero_height_query_is_matched():
    logits = torch.tensor([[1.0, -1.0], [-1.0, 3.0]])
    pred_boxes = torch.tensor([[0.5, 0.25, 0.5, 0.0], [0.5, 0.25, 0.5, 0.5]])  # query 0: a line
    output = {"logits": logits, "pred_boxes": pred_boxes}  # sigmoid scores (no "no object" class)
    target = DetectionTarget([0], [[25, 20, 75, 20]], image_size=(80, 100))  # the line in pixels
    torch.testing.assert_close(target(output), torch.sigmoid(torch.tensor(1.0)))
    target.bind(output, (80, 100))
    assert target.slots.tolist() == [0]


def test_given_boxes_must_be_finite_corners():
    with pytest.raises(ValueError, match=r"x1 <= x2 and y1 <= y2 .* box 1 is \[10.0, 10.0, 5.0, 5.0\]"):
        DetectionTarget([1, 1], [[0, 0, 1, 1], [10, 10, 5, 5]])
    with pytest.raises(ValueError, match="must be finite"):
        DetectionTarget([1], [[0, 0, math.nan, 1]])
    DetectionTarget([1], [[3, 4, 3, 9]])  # zero width is a box


def test_an_untrained_fcos_flat_boxes_are_explained_in_a_batch():
    """Random-weight FCOS predicts lines (its box clipped to a cell edge). Explaining several in one
    batch reruns the detector on the repeated photo, whose boxes differ from the first run's in the
    last bits: the plain IoU (0/0) lost them all."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.cli.detection import load_detector
    from pytorch_grad_cam.detection.layers import detector_target_layers
    from pytorch_grad_cam.detection.outputs import model_detections

    model, _, _ = load_detector("fcos_resnet50_fpn", None, 64, 0.0)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    (found,) = model_detections(model, x, score_threshold=0.0)
    flat = (found.boxes[:, 2] <= found.boxes[:, 0]) | (found.boxes[:, 3] <= found.boxes[:, 1])
    assert int(flat.sum()) >= 3  # the fixture: the behaviour under test happens
    lines = Detections(*(part[flat][:3] for part in found[:3]))
    targets = predictions_to_targets(lines, each_box=True)
    maps = GradCAM(model, *detector_target_layers(model))(x.repeat(3, 1, 1, 1), targets)
    assert maps.shape == (3, 64, 64) and np.isfinite(maps).all()
    # each map is its own box's: every pair differs
    assert min(np.abs(maps[i] - maps[j]).max() for i in range(3) for j in range(i + 1, 3)) > 1e-3
