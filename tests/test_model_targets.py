"""Targets: values on hand-made outputs, errors."""

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam.utils.model_targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
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
    assert ClassifierOutputReST(1)(LOGITS).item() == pytest.approx(math.log(SOFTMAX[1]), rel=1e-6)
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
