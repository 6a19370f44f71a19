"""FullGrad on detectors: targets=None explains every predicted box (one map per image, the detector
rule of utils.detection_targets.default_detection_targets); explicit DetectionTargets are bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import FullGrad
from pytorch_grad_cam.detection.outputs import model_detections
from pytorch_grad_cam.detection.targets import DetectionTarget, predictions_to_targets


class TwoBoxes(torch.nn.Module):
    """A torchvision-style detector: two fixed boxes, each scored by the input inside it only
    (through a biased conv, so FullGrad's bias term is on the path too); ``boxes`` of them kept."""

    BOXES = torch.tensor([[0.0, 0.0, 8.0, 6.0], [10.0, 8.0, 16.0, 12.0]])

    def __init__(self, boxes: int = 2) -> None:
        super().__init__()
        self.boxes = boxes
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.fill_(0.5)
            self.conv.bias.fill_(0.1)

    def forward(self, x):
        maps = torch.relu(self.conv(x))
        outputs = []
        for image in maps:
            means = torch.stack([image[0, 0:6, 0:8].mean(), image[1, 8:12, 10:16].mean()])
            scores = torch.sigmoid(means)[: self.boxes]
            labels = torch.tensor([1, 2])[: self.boxes]
            outputs.append({"boxes": self.BOXES[: self.boxes].clone(), "labels": labels, "scores": scores})
        return outputs


def _photos(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 12, 16, generator=torch.Generator().manual_seed(0))


def test_targets_none_explains_every_predicted_box_and_nothing_else():
    model = TwoBoxes()
    x = _photos()
    maps = FullGrad(model)(x)
    explicit = FullGrad(model)(x, [DetectionTarget([1, 2], TwoBoxes.BOXES) for _ in range(2)])
    np.testing.assert_allclose(maps, explicit, atol=1e-6, rtol=0)
    inside = np.zeros((12, 16), dtype=bool)
    inside[0:6, 0:8] = inside[8:12, 10:16] = True
    assert maps.shape == (2, 12, 16)
    assert (maps[:, ~inside] == 0).all() and (maps[:, inside] > 0).all()


def test_one_box_target_lies_in_its_box():
    model = TwoBoxes()
    (map_,) = FullGrad(model)(_photos(1), [DetectionTarget([2], TwoBoxes.BOXES[1:])])
    inside = np.zeros((12, 16), dtype=bool)
    inside[8:12, 10:16] = True
    assert (map_[~inside] == 0).all() and (map_[inside] > 0).all()


def test_a_box_that_is_not_predicted_is_a_clear_error():
    model = TwoBoxes(boxes=1)
    with pytest.raises(
        ValueError, match=r"box 0 \(label 2, \[10.0, 8.0, 16.0, 12.0\]\) matches no detection"
    ):
        FullGrad(model)(_photos(1), [DetectionTarget([2], TwoBoxes.BOXES[1:])])
    with pytest.raises(ValueError, match="predicts none in image 0"):
        FullGrad(TwoBoxes(boxes=0))(_photos(1))


def test_a_torchvision_detector_one_map_per_image_for_its_predicted_boxes():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, min_size=32, max_size=32
    ).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps = FullGrad(model)(x)
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()
    targets = [target for found in model_detections(model, x) for target in predictions_to_targets(found)]
    np.testing.assert_allclose(maps, FullGrad(model)(x, targets), atol=1e-5, rtol=0)
    assert np.abs(maps[0] - maps[1]).max() > 1e-2
    assert all(p.grad is None for p in model.parameters()) and not model.training
