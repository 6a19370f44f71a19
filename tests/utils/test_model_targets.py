"""Targets: values on hand-made outputs, golden values, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam import HiResCAM
from pytorch_grad_cam.detection.outputs import box_iou
from pytorch_grad_cam.utils.model_targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FasterRCNNBoxScoreTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    SimilarityToConceptTarget,
    SoftmaxOutputTarget,
)

LOGITS = torch.tensor([1.0, 2.0, 0.0])
SOFTMAX = np.exp([1.0, 2.0, 0.0]) / np.exp([1.0, 2.0, 0.0]).sum()


def test_classifier_targets():
    assert ClassifierOutputTarget(1)(LOGITS).item() == 2.0
    np.testing.assert_allclose(
        ClassifierOutputTarget(2)(torch.stack([LOGITS, LOGITS * 2])).numpy(), [0.0, 0.0]
    )
    assert ClassifierOutputSoftmaxTarget(0)(LOGITS).item() == pytest.approx(SOFTMAX[0], rel=1e-6)
    assert ClassifierOutputReST(1)(LOGITS).item() == pytest.approx(2.0 + math.log(SOFTMAX[1]), rel=1e-6)
    np.testing.assert_allclose(SoftmaxOutputTarget()(LOGITS).numpy(), SOFTMAX, rtol=1e-6)
    assert RawScoresOutputTarget()(LOGITS) is LOGITS


def test_classifier_target_reads_logits_of_structured_outputs():
    assert ClassifierOutputTarget(1)({"logits": LOGITS, "hidden": torch.zeros(4)}).item() == 2.0


def test_classifier_target_errors():
    with pytest.raises(ValueError, match="category 3 is out of range .* 3 classes"):
        ClassifierOutputTarget(3)(LOGITS)
    with pytest.raises(TypeError, match="category must be an int"):
        ClassifierOutputTarget(1.5)
    with pytest.raises(TypeError, match="category must be an int"):
        ClassifierOutputTarget(True)
    with pytest.raises(TypeError, match="tensor of class scores"):
        ClassifierOutputTarget(0)(["not", "a", "tensor"])


def test_binary_target():
    assert BinaryClassifierOutputTarget(1)(torch.tensor([0.7])).item() == pytest.approx(0.7)
    assert BinaryClassifierOutputTarget(0)(torch.tensor([0.7])).item() == pytest.approx(-0.7)
    with pytest.raises(ValueError, match="0 or 1"):
        BinaryClassifierOutputTarget(2)


def test_semantic_segmentation_target():
    output = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)  # (classes, H, W)
    mask = np.array([[1, 0, 0], [0, 0, 1]])
    # class 1 scores are 6..11: (0,0) -> 6, (1,2) -> 11
    assert SemanticSegmentationTarget(1, mask)(output).item() == 17.0
    assert SemanticSegmentationTarget(0, torch.ones(2, 3))(output).item() == sum(range(6))
    with pytest.raises(ValueError, match="mask shape"):
        SemanticSegmentationTarget(0, np.ones((3, 3)))(output)
    with pytest.raises(ValueError, match="category 2 is out of range"):
        SemanticSegmentationTarget(2, mask)(output)
    with pytest.raises(ValueError, match="2-D"):
        SemanticSegmentationTarget(0, np.ones(3))


def test_rest_golden():
    logits = torch.tensor([0.5, 2.0, -1.0, 0.3])
    # y_1 + log softmax_1 = 2 + 2 - log(e^0.5 + e^2 + e^-1 + e^0.3) = 4 - 2.375419
    torch.testing.assert_close(ClassifierOutputReST(1)(logits), torch.tensor(1.624581), atol=1e-6, rtol=0)
    batch = torch.stack([logits, 2 * logits])
    expected = 2 * batch[:, 1] - torch.logsumexp(batch, dim=1)
    torch.testing.assert_close(ClassifierOutputReST(1)(batch), expected)
    with pytest.raises(ValueError, match="category 4 is out of range"):
        ClassifierOutputReST(4)(logits)


DETECTIONS = {
    "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0]]),
    "labels": torch.tensor([1, 2, 1]),
    "scores": torch.tensor([0.9, 0.8, 0.7]),
}


def test_box_iou_golden():
    iou = box_iou(torch.tensor([[1.0, 1.0, 11.0, 11.0], [0.0, 0.0, 0.0, 0.0]]), DETECTIONS["boxes"])
    # [1, 1, 11, 11] vs [0, 0, 10, 10]: 81 / (100 + 100 - 81); vs [5, 5, 15, 15]: 36 / 164
    expected = torch.tensor([[81 / 119, 36 / 164, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(iou, expected)


@pytest.mark.parametrize(
    ("labels", "boxes", "threshold", "expected"),
    [
        ([1], [[0, 0, 10, 10]], 0.5, 1.0 + 0.9),  # exact match: IoU 1 + score
        ([1], [[1, 1, 11, 11]], 0.5, 81 / 119 + 0.9),
        ([2], [[0, 0, 10, 10]], 0.5, 0.0),  # best box has another label
        ([2, 1], [[5, 5, 15, 15], [21, 21, 31, 31]], 0.5, 1.0 + 0.8 + 81 / 119 + 0.7),
        ([1], [[1, 1, 11, 11]], 0.7, 0.0),  # IoU 0.68 is below the threshold
        ([1], [[3, 3, 13, 13]], 0.2, 0.0),  # the best IoU is the label-2 box
    ],
)
def test_faster_rcnn_box_score_golden(labels, boxes, threshold, expected):
    target = FasterRCNNBoxScoreTarget(labels, np.array(boxes, dtype=np.float32), threshold)
    torch.testing.assert_close(target(DETECTIONS), torch.tensor(expected), atol=1e-6, rtol=0)


def test_faster_rcnn_box_score_is_differentiable_and_handles_no_detections():
    scores = DETECTIONS["scores"].clone().requires_grad_(True)
    target = FasterRCNNBoxScoreTarget([1], torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    (grad,) = torch.autograd.grad(target({**DETECTIONS, "scores": scores}), scores)
    torch.testing.assert_close(grad, torch.tensor([1.0, 0.0, 0.0]))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    assert float(target(empty)) == 0.0


def test_faster_rcnn_box_score_bad_arguments():
    with pytest.raises(ValueError, match=r"bounding_boxes must have shape \(K, 4\)"):
        FasterRCNNBoxScoreTarget([1], [[0, 0, 10]])
    with pytest.raises(ValueError, match="got 2 labels for 1 bounding boxes"):
        FasterRCNNBoxScoreTarget([1, 2], [[0, 0, 10, 10]])
    with pytest.raises(TypeError, match="labels entries must be an int"):
        FasterRCNNBoxScoreTarget(["cat"], [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="expects one image's detections"):
        FasterRCNNBoxScoreTarget([1], [[0, 0, 10, 10]])(torch.zeros(4))


def test_similarity_to_concept_golden():
    target = SimilarityToConceptTarget(np.array([2.0, 0.0, 1.0]))
    # <[1, 2, 2], [2, 0, 1]> / (3 sqrt 5)
    torch.testing.assert_close(target(torch.tensor([1.0, 2.0, 2.0])), torch.tensor(4 / (3 * math.sqrt(5))))
    with pytest.raises(ValueError, match="has 2 values but concept_features has 3"):
        target(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="non-empty float vector"):
        SimilarityToConceptTarget(np.array([1, 2]))


def test_similarity_to_concept_cam(mixing_head_net):
    """An embedding model: the CAM of the cosine similarity to a concept embedding."""
    # embedding e = W a with a = x (1 channel, 1x3): e = [x0 + x1, x2]
    model = mixing_head_net([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], mixing=[[1.0]])
    x = torch.tensor([[[[1.0, 2.0, 4.0]]]])
    concept = torch.tensor([1.0, 0.0])
    # cos(e, c) = e0 / |e| with e = [3, 4]: d/de = [16, -12] / 125, d/da = [16, 16, -12] / 125
    # HiResCAM: G * A = [16, 32, -48] / 125 -> [0.5, 1, 0]
    cam = HiResCAM(model, [model.features])(x, [SimilarityToConceptTarget(concept)])
    np.testing.assert_allclose(cam, [[[0.5, 1.0, 0.0]]], atol=1e-6)


class TinyDetector(torch.nn.Module):
    """Returns torchvision-style detections, one dict per image, scored from a conv feature map."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        features = torch.relu(self.backbone(x))
        results = []
        for image_features in features:
            scores = torch.sigmoid(image_features.mean(dim=(1, 2))[:2])
            results.append(
                {
                    "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 4.0, 8.0, 8.0]]),
                    "labels": torch.tensor([1, 2]),
                    "scores": scores,
                }
            )
        return results


def test_detection_outputs_are_split_per_image():
    """A list of one dict per image: each target sees its own image's detections (batch invariant)."""
    model = TinyDetector().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = [
        FasterRCNNBoxScoreTarget([1], [[0.0, 0.0, 4.0, 4.0]]),
        FasterRCNNBoxScoreTarget([2], [[4.0, 4.0, 8.0, 8.0]]),
    ]
    cam = HiResCAM(model, [model.backbone])
    batch = cam(x, targets)
    for index in range(2):
        np.testing.assert_allclose(
            batch[index : index + 1], cam(x[index : index + 1], [targets[index]]), atol=1e-6
        )
    # image 1 explains score 0 (channel 0 of the features), image 2 score 1 (channel 1):
    # HiResCAM = relu(G_c * A_c) of that channel, G = sigmoid' / 64 where the feature is positive
    with torch.no_grad():
        features = torch.relu(model.backbone(x))
    for index, channel in enumerate((0, 1)):
        expected = features[index, channel] / features[index, channel].max()
        np.testing.assert_allclose(batch[index], expected.numpy(), atol=1e-5)
