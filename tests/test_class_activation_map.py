"""CAM: the final linear layer's class weights (torchcam 0.5's CAM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import CAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, SemanticSegmentationTarget


class GapNet(nn.Module):
    """x -> identity 1x1 conv (A = x) -> global average pooling -> fc."""

    def __init__(self, fc_weight: list[list[float]], pointwise: bool = False) -> None:
        super().__init__()
        channels = len(fc_weight[0])
        self.features = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        weight = torch.tensor(fc_weight)
        if pointwise:
            self.fc = nn.Conv2d(channels, len(fc_weight), 1)
            weight = weight[:, :, None, None]
        else:
            self.fc = nn.Linear(channels, len(fc_weight))
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
            self.fc.weight.copy_(weight)
            self.fc.bias.fill_(0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.features(x))
        if isinstance(self.fc, nn.Linear):
            return self.fc(pooled.flatten(1))
        return self.fc(pooled).flatten(1)


X = torch.tensor([[[[1.0, 3.0, 0.0]], [[2.0, 0.0, 1.0]]]])
FC = [[1.0, -1.0], [1.0, 2.0]]


@pytest.mark.parametrize("pointwise", [False, True])
def test_golden_value(pointwise):
    model = GapNet(FC, pointwise).eval()
    cam = CAM(model, [model.features], fc_layer=model.fc)
    # class 0: [1, 3, 0] - [2, 0, 1] = [-1, 3, -1] -> [0, 1, 0]
    # class 1: [1, 3, 0] + 2 [2, 0, 1] = [5, 3, 2] -> [1, 1/3, 0]
    np.testing.assert_allclose(
        cam(torch.cat([X, X]), [0, 1]), [[[0.0, 1.0, 0.0]], [[1.0, 1 / 3, 0.0]]], atol=1e-6
    )
    # targets=None: the top class; mean pooling gives logits [1/3, 5/3] + 0.25 -> class 1
    np.testing.assert_allclose(cam(X), [[[1.0, 1 / 3, 0.0]]], atol=1e-6)
    # a softmax target names a class too
    np.testing.assert_allclose(cam(X, [ClassifierOutputSoftmaxTarget(0)]), [[[0.0, 1.0, 0.0]]], atol=1e-6)


def test_finds_the_only_linear_layer():
    model = GapNet(FC).eval()
    assert CAM(model, [model.features]).fc_layer is model.fc


def test_bad_arguments(small_cnn):
    model = GapNet(FC).eval()
    two_heads = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="has 2 nn.Linear layers; pass fc_layer"):
        CAM(two_heads, [two_heads[0]])
    with pytest.raises(TypeError, match="fc_layer must be an nn.Linear or a 1x1 convolution"):
        CAM(model, [model.features], fc_layer=nn.Conv2d(2, 2, 3))
    cam = CAM(model, [model.features])
    with pytest.raises(ValueError, match="class 5 is out of range for fc_layer with 2 classes"):
        cam(X, [5])
    with pytest.raises(TypeError, match="CAM explains classes"):
        cam(X, [SemanticSegmentationTarget(0, np.ones((1, 3)))])
    wrong_layer = CAM(small_cnn, [small_cnn.block1])
    with pytest.raises(
        ValueError, match="fc_layer has 16 input features but the target layer has 8 channels"
    ):
        wrong_layer(torch.randn(1, 3, 8, 8))
