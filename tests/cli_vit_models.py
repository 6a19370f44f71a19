"""Small seeded models for the command line's tests, built by ``--model tests/cli_vit_models.py:NAME``."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def tiny_torchvision_vit() -> nn.Module:
    """A 2-block torchvision ViT for 224x224 inputs (32-pixel patches: a 7x7 grid), 16 channels, 5
    classes; its head drawn at random (torchvision starts it at zero: every class score 0)."""
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=224, patch_size=32, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    nn.init.normal_(model.heads.head.weight)
    return model


def tiny_cnn() -> nn.Module:
    """conv -> ReLU -> global pooling -> linear, 5 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    )
