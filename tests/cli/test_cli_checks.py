"""The single-image command's checks (pytorch_grad_cam.cli.checks): the layers CAM can explain."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam.cli.checks import layers_feeding_the_classifier


class Shared(nn.Module):
    """conv(3->4) -> relu -> conv(4->6) -> bn -> relu (the same module twice) -> pool -> linear(6)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.act(self.bn(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


def test_the_layers_with_the_linear_layers_inputs_last_first_shared_and_pooled_left_out():
    model = Shared().eval()
    assert layers_feeding_the_classifier(model, torch.randn(1, 3, 8, 8)) == ["bn", "conv2"]
    assert all(not module._forward_hooks for module in model.modules())  # hooks removed


def test_no_answer_without_exactly_one_linear():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 4, 3), nn.Linear(3, 2))
    assert layers_feeding_the_classifier(model, torch.randn(1, 3, 2, 2)) == []
