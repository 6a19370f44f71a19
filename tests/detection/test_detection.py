"""Detector outputs: box conversion, NMS, the families' layouts and the boxes a detector predicts."""

from __future__ import annotations

import pytest
import torch

from pytorch_grad_cam.detection.outputs import (
    NO_OBJECT_CLASS_OUTPUTS,
    cxcywh_to_xyxy,
    network_of,
    nms,
    output_family,
    predicted_detections,
    slot_predictions,
)


def test_cxcywh_to_xyxy_golden():
    boxes = torch.tensor([[10.0, 20.0, 4.0, 6.0], [0.5, 0.5, 1.0, 1.0]])
    expected = torch.tensor([[8.0, 17.0, 12.0, 23.0], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(cxcywh_to_xyxy(boxes), expected)


def test_nms_keeps_the_higher_score_of_overlapping_boxes():
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 5.0]]
    )
    scores = torch.tensor([0.6, 0.9, 0.5, 0.8])
    # box 1 (0.9) suppresses box 0 (IoU 90/110 = 0.82); box 3 overlaps box 1 by 45/105 = 0.43 only
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 3, 0, 2]


class _DetrOutput(dict):
    """Stands for a HuggingFace output class: only its name matters to the no-object rule."""


def _named_output(name, **values):
    return type(name, (_DetrOutput,), {})(**values)


def test_output_family():
    tv = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0), "scores": torch.zeros(0)}
    assert output_family(tv) == "torchvision"
    assert output_family(torch.zeros(6, 10)) == "yolo"
    assert output_family((torch.zeros(6, 10), {"feats": []})) == "yolo"
    assert output_family({"logits": torch.zeros(3, 4), "pred_boxes": torch.zeros(3, 4)}) == "detr"
    assert output_family(torch.zeros(10)) is None
    assert output_family({"logits": torch.zeros(3)}) is None


YOLO_RAW = torch.tensor(
    [
        # anchors:  0     1     2     3
        [10.0, 11.0, 40.0, 10.0],  # cx
        [10.0, 10.0, 40.0, 10.0],  # cy
        [10.0, 10.0, 20.0, 4.0],  # w
        [10.0, 10.0, 20.0, 4.0],  # h
        [0.9, 0.7, 0.1, 0.3],  # class 0
        [0.1, 0.2, 0.8, 0.6],  # class 1
    ]
)


def test_yolo_slots_are_corner_boxes_and_probabilities():
    boxes, probabilities = slot_predictions((YOLO_RAW, {"feats": []}))
    torch.testing.assert_close(boxes[0], torch.tensor([5.0, 5.0, 15.0, 15.0]))
    torch.testing.assert_close(boxes[2], torch.tensor([30.0, 30.0, 50.0, 50.0]))
    torch.testing.assert_close(probabilities, YOLO_RAW[4:].T)


def test_yolo_predictions_threshold_then_nms_per_class():
    found = predicted_detections(YOLO_RAW, score_threshold=0.25)
    # class 0: anchors 0 (0.9), 1 (0.7, IoU 0.82 with 0: suppressed), 3 (0.3, inside 0: IoU 0.16)
    # class 1: anchors 2 (0.8), 3 (0.6)
    assert list(zip(found.slots.tolist(), found.labels.tolist())) == [(0, 0), (2, 1), (3, 1), (3, 0)]
    torch.testing.assert_close(found.scores, torch.tensor([0.9, 0.8, 0.6, 0.3]))
    torch.testing.assert_close(found.boxes[1], torch.tensor([30.0, 30.0, 50.0, 50.0]))
    assert predicted_detections(YOLO_RAW, score_threshold=0.25, iou_threshold=0.9).slots.numel() == 5
    assert predicted_detections(YOLO_RAW).slots.tolist() == [0, 2, 3, 3]  # default threshold 0.25


def test_detr_with_a_no_object_class_is_softmax_and_argmax():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 3.0, 0.0]])
    output = _named_output(
        "DetrObjectDetectionOutput",
        logits=logits,
        pred_boxes=torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0.5, 0.25, 0.2, 0.1]]),
    )
    assert "DetrObjectDetectionOutput" in NO_OBJECT_CLASS_OUTPUTS
    boxes, probabilities = slot_predictions(output, (100, 200))
    torch.testing.assert_close(boxes[0], torch.tensor([50.0, 25.0, 150.0, 75.0]))  # (x, y) scale (200, 100)
    torch.testing.assert_close(probabilities, torch.softmax(logits, -1)[:, :2])
    found = predicted_detections(output, image_size=(100, 200))
    # query 0: p(class 0) = e^2 / (e^2 + 2) = 0.787; query 1: the no-object class wins; query 2: class 1
    assert found.slots.tolist() == [2, 0] and found.labels.tolist() == [1, 0]
    torch.testing.assert_close(found.scores[1], torch.tensor(2.0).exp() / (torch.tensor(2.0).exp() + 2))


def test_detr_without_a_no_object_class_is_sigmoid_per_class():
    logits = torch.tensor([[2.0, 1.0], [-3.0, 0.5]])
    output = _named_output("RTDetrObjectDetectionOutput", logits=logits, pred_boxes=torch.full((2, 4), 0.5))
    _, probabilities = slot_predictions(output, (10, 10))
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))
    found = predicted_detections(output, image_size=(10, 10))
    # sigmoid(2) 0.88, sigmoid(1) 0.73, sigmoid(0.5) 0.62 exceed 0.5; one query may give two classes
    assert list(zip(found.slots.tolist(), found.labels.tolist())) == [(0, 0), (0, 1), (1, 1)]
    with pytest.raises(ValueError, match=r"pass image_size=\(H, W\)"):
        slot_predictions(output)


def test_torchvision_predictions_are_the_output_sorted():
    output = {
        "boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]]),
        "labels": torch.tensor([3, 4]),
        "scores": torch.tensor([0.2, 0.7]),
    }
    found = predicted_detections(output)
    assert found.labels.tolist() == [4, 3] and found.slots is None
    assert predicted_detections(output, score_threshold=0.5).labels.tolist() == [4]


def test_network_of_leaves_other_models_alone():
    model = torch.nn.Linear(2, 2)
    assert network_of(model) is model
