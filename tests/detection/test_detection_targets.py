"""DetectionTarget: matching given boxes to each family's output, and scoring them."""

from __future__ import annotations

import pytest
import torch

from pytorch_grad_cam.detection.outputs import predicted_detections
from pytorch_grad_cam.detection.targets import (
    DetectionTarget,
    bind_detection_targets,
    predictions_to_targets,
    unbind_detection_targets,
)
from pytorch_grad_cam.utils.model_targets import DetectionTarget as ReExported

TORCHVISION = {
    "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [1.0, 1.0, 11.0, 11.0]]),
    "labels": torch.tensor([1, 2, 2]),
    "scores": torch.tensor([0.9, 0.8, 0.3]),
}


def test_reexported_from_model_targets():
    assert ReExported is DetectionTarget


@pytest.mark.parametrize(
    ("labels", "boxes", "add_iou", "expected"),
    [
        ([1], [[0, 0, 10, 10]], False, 0.9),
        ([1], [[0, 0, 10, 10]], True, 0.9 + 1.0),
        # label 2: detection 2 (IoU 81/119) is closer than detection 1 (IoU 25/175) though it scores less
        ([2], [[0, 0, 10, 10]], False, 0.3),
        ([2], [[0, 0, 10, 10]], True, 0.3 + 81 / 119),
        ([1, 2], [[0, 0, 10, 10], [5, 5, 15, 15]], False, 0.9 + 0.8),
    ],
)
def test_torchvision_match_is_the_same_label_with_the_highest_iou(labels, boxes, add_iou, expected):
    target = DetectionTarget(labels, boxes, add_iou=add_iou)
    torch.testing.assert_close(target(TORCHVISION), torch.tensor(expected), atol=1e-6, rtol=0)


def test_torchvision_score_is_differentiable_in_the_matched_score():
    scores = TORCHVISION["scores"].clone().requires_grad_(True)
    target = DetectionTarget([2], [[0, 0, 10, 10]])
    (grad,) = torch.autograd.grad(target({**TORCHVISION, "scores": scores}), scores)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0]))


def test_a_box_that_matches_nothing_is_a_clear_error():
    target = DetectionTarget([1], [[4, 4, 14, 14]])  # IoU 36/164 with the label-1 detection
    with pytest.raises(ValueError, match=r"box 0 \(label 1, \[4.0, 4.0, 14.0, 14.0\]\).* is 0.220"):
        target(TORCHVISION)
    with pytest.raises(ValueError, match="0 of 3 detections have that label"):
        DetectionTarget([7], [[0, 0, 10, 10]])(TORCHVISION)


def test_once_bound_a_lost_torchvision_box_scores_zero():
    target = DetectionTarget([1, 2], [[0, 0, 10, 10], [5, 5, 15, 15]])
    bind_detection_targets([target], [TORCHVISION], torch.zeros(1, 3, 20, 20))
    perturbed = {key: value[1:] for key, value in TORCHVISION.items()}  # the label-1 box is gone
    torch.testing.assert_close(target(perturbed), torch.tensor(0.8))
    unbind_detection_targets([target])
    with pytest.raises(ValueError, match="matches no detection"):
        bind_detection_targets([target], [perturbed], torch.zeros(1, 3, 20, 20))


def test_a_predicted_box_of_zero_area_matches_itself():
    output = {
        "boxes": torch.tensor([[3.0, 4.0, 3.0, 9.0]]),
        "labels": torch.tensor([0]),
        "scores": torch.tensor([0.4]),
    }
    torch.testing.assert_close(DetectionTarget([0], [[3, 4, 3, 9]])(output), torch.tensor(0.4))


# cx, cy, w, h, then the probabilities of classes 0 and 1, for 4 anchors
YOLO_RAW = torch.tensor(
    [
        [10.0, 11.0, 40.0, 10.0],
        [10.0, 10.0, 40.0, 10.0],
        [10.0, 10.0, 20.0, 4.0],
        [10.0, 10.0, 20.0, 4.0],
        [0.6, 0.7, 0.1, 0.95],
        [0.1, 0.2, 0.8, 0.6],
    ]
)


def test_yolo_match_is_the_anchor_with_the_highest_label_score_among_the_overlapping():
    # anchors 0 and 1 overlap [5, 5, 15, 15] by IoU 1 and 0.82; anchor 3 (score 0.95) by 0.16 only
    target = DetectionTarget([0], [[5, 5, 15, 15]])
    torch.testing.assert_close(target((YOLO_RAW, {})), torch.tensor(0.7))
    bind_detection_targets([target], YOLO_RAW[None], torch.zeros(1, 3, 64, 64))
    assert target.slots.tolist() == [1]
    # a perturbed output is scored at the bound anchor, wherever its box went
    moved = YOLO_RAW.clone()
    moved[0, 1], moved[4, 1] = 50.0, 0.25
    torch.testing.assert_close(target(moved), torch.tensor(0.25))
    with pytest.raises(ValueError, match=r"best IoU is 0.160"):
        DetectionTarget([0], [[8, 8, 12, 12]], iou_threshold=0.5).bind(YOLO_RAW[:, [0, 2]], (64, 64))


def test_yolo_add_iou_is_differentiable_through_the_box():
    raw = YOLO_RAW.clone().requires_grad_(True)
    target = DetectionTarget([1], [[30, 30, 50, 52]], add_iou=True, slots=[2])
    score = target(raw)
    torch.testing.assert_close(score, torch.tensor(0.8 + 400 / 440))
    (grad,) = torch.autograd.grad(score, raw)
    assert grad[5, 2] == 1.0 and grad[:4, 2].abs().sum() > 0 and grad[:, [0, 1, 3]].abs().sum() == 0


def test_given_slots_survive_binding_and_labels_are_checked():
    target = DetectionTarget([1], [[0, 0, 1, 1]], slots=[3])
    target.bind(YOLO_RAW, (64, 64))
    torch.testing.assert_close(target(YOLO_RAW), torch.tensor(0.6))
    with pytest.raises(ValueError, match="label 2 is out of range for a detector with 2 classes"):
        DetectionTarget([2], [[5, 5, 15, 15]])(YOLO_RAW)


class DetrObjectDetectionOutput(dict):
    """Named as HuggingFace's DETR output: the last logit is "no object"."""


def test_detr_box_in_pixels_is_matched_to_its_query():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    pred_boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.4, 0.4]])  # queries 0 and 1 overlap
    output = DetrObjectDetectionOutput(logits=logits, pred_boxes=pred_boxes)
    target = DetectionTarget([1], [[10, 20, 30, 60]], image_size=(80, 40))  # query 0 in pixels
    probability = torch.softmax(logits[0], -1)[1]
    torch.testing.assert_close(target(output), probability)
    with pytest.raises(ValueError, match="pass image_size"):
        DetectionTarget([1], [[10, 20, 30, 60]])(output)
    sigmoid = DetectionTarget([1], [[10, 20, 30, 60]], image_size=(80, 40), no_object_class=False)
    # without a no-object class, query 1 (IoU 0.64 with the box) has the higher label-1 score
    torch.testing.assert_close(sigmoid(output), torch.sigmoid(torch.tensor(2.0)))


def test_predictions_to_targets_explain_every_predicted_box():
    found = predicted_detections(YOLO_RAW, score_threshold=0.5)
    (together,) = predictions_to_targets(found)
    each = predictions_to_targets(found, each_box=True)
    # class 0: anchors 3 (0.95), 1 (0.7); anchor 0 (0.6) overlaps anchor 1 by 0.82 > 0.7: suppressed
    assert [t.slots.tolist() for t in each] == [[3], [2], [1], [3]]
    assert [t.labels for t in each] == [[0], [1], [0], [1]]
    total = sum(float(t(YOLO_RAW)) for t in each)
    torch.testing.assert_close(together(YOLO_RAW), torch.tensor(total))
    torch.testing.assert_close(together(YOLO_RAW), torch.tensor(0.95 + 0.8 + 0.7 + 0.6))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"boxes must have shape \(K, 4\)"):
        DetectionTarget([1], [[0, 0, 10]])
    with pytest.raises(ValueError, match="got 2 labels for 1 boxes"):
        DetectionTarget([1, 2], [[0, 0, 10, 10]])
    with pytest.raises(TypeError, match="labels must be int class indices"):
        DetectionTarget([1.5], [[0, 0, 10, 10]])
    with pytest.raises(TypeError, match="add_iou must be True or False"):
        DetectionTarget([1], [[0, 0, 10, 10]], add_iou=1)
    with pytest.raises(ValueError, match="expects one image's detector output"):
        DetectionTarget([1], [[0, 0, 10, 10]])(torch.zeros(3))


def test_a_target_stays_bound_within_a_call_and_binds_again_in_the_next():
    target = DetectionTarget([0], [[5, 5, 15, 15]])
    bind_detection_targets([target], YOLO_RAW[None], torch.zeros(1, 3, 64, 64))
    assert target.bound and target.slots.tolist() == [1]
    elsewhere = YOLO_RAW.clone()
    elsewhere[:2] += 30.0  # every box moved away: nothing matches [5, 5, 15, 15] any more
    bind_detection_targets([target], elsewhere[None], torch.zeros(1, 3, 64, 64))  # a later view: kept
    assert target.slots.tolist() == [1]
    unbind_detection_targets([target, "not a detection target"])
    assert not target.bound and target.slots is None
    with pytest.raises(ValueError, match="matches no prediction"):
        bind_detection_targets([target], elsewhere[None], torch.zeros(1, 3, 64, 64))


def test_a_cam_call_matches_the_boxes_on_its_own_input():
    from pytorch_grad_cam import HiResCAM

    class Shift(torch.nn.Module):
        """The raw YOLO_RAW output, its boxes moved right by the input's first value."""

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Identity()

        def forward(self, x):
            values = self.layer(x)[:, 0, 0]  # (B, 2): the shift, and a factor on the scores
            base = YOLO_RAW[None].expand(x.shape[0], -1, -1)
            shifted = base[:, :1] + values[:, :1, None]
            return torch.cat([shifted, base[:, 1:4], base[:, 4:] * values[:, 1:, None]], dim=1)

    model = Shift()
    target = DetectionTarget([1], [[30, 30, 50, 50]])
    x = torch.ones(1, 1, 1, 2)
    x[0, 0, 0, 0] = 0.0
    HiResCAM(model, [model.layer])(x, [target])
    assert target.slots.tolist() == [2]
    x[0, 0, 0, 0] = -30.0  # anchor 0 ([-25, -25, 45, ...]) moves off; anchor 2 goes to x 10..30
    with pytest.raises(ValueError, match="matches no prediction"):
        HiResCAM(model, [model.layer])(x, [target])
