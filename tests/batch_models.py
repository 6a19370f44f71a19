"""Tiny models for the batch runner's tests, loadable as ``--model tests/batch_models.py:tiny_cnn``.

Not a test module (pytest does not collect it): the command-line tests start the runner in
subprocesses (also under torchrun), which build their model from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def tiny_cnn(num_classes: int = 5) -> nn.Module:
    """conv-relu-conv(stride 2)-relu -> mean pool -> linear, seeded: the same weights in every process.

    Its target layer is ``features``.
    """
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential()
    model.add_module(
        "features",
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        ),
    )
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("head", nn.Linear(8, num_classes))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


class Stalling(nn.Module):
    """:func:`tiny_cnn` that, after ``BATCH_TEST_STALL_AFTER`` forward calls, creates the file
    ``BATCH_TEST_STALL_MARKER`` and sleeps (so a test can kill the process at a known point).

    Without the variables it is :func:`tiny_cnn`. Its target layer is ``inner.features``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_cnn()
        self.calls = 0
        self.stall_after = int(os.environ.get("BATCH_TEST_STALL_AFTER", "-1"))
        self.marker = os.environ.get("BATCH_TEST_STALL_MARKER")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if 0 <= self.stall_after < self.calls:
            if self.marker:
                Path(self.marker).touch()
            time.sleep(120)
        return self.inner(x)


def stalling_cnn() -> nn.Module:
    return Stalling().eval()


class ColourSegmenter(nn.Module):
    """A segmenter of three classes by colour, on ImageNet-normalised input: 0 (dark), 1 (red), 2 (blue).

    ``features`` (a 1x1 convolution, the identity) -> ``classifier`` (1x1): class 0 scores
    ``0.5 - (red + blue) / 4``, class 1 the red channel, class 2 the blue one (normalised channels:
    black is about (-2.1, -1.8, -1.8), pure red has red 2.25, pure blue has blue 2.64). A black pixel
    is class 0, a pure red one class 1, a pure blue one class 2. Returns torchvision's
    ``{"out": (B, 3, H, W)}``. GradCAM of class ``k`` over its own mask, at ``features``, is exactly
    that mask (1 on the class's pixels, 0 elsewhere): its channel weights are the class's 1x1 weights
    times the mask's area, and ``w . features`` is positive on the class's own colour only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1)
        self.classifier = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features.bias.zero_()
            self.classifier.weight.copy_(
                torch.tensor([[-0.25, 0, -0.25], [1, 0, 0], [0, 0, 1]]).view(3, 3, 1, 1)
            )
            self.classifier.bias.copy_(torch.tensor([0.5, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.features(x))}


def colour_segmenter() -> nn.Module:
    """:class:`ColourSegmenter`, in eval mode (``--model tests/batch_models.py:colour_segmenter``)."""
    return ColourSegmenter().eval()


def colour_regions(height: int = 40, width: int = 40, blue: tuple[int, int] = (8, 4)) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture for :class:`ColourSegmenter`: black, a red top-left quarter
    (rows and columns below half) and a blue ``blue`` = (rows, columns) block in the bottom-right corner."""
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    picture[: height // 2, : width // 2, 0] = 255
    picture[height - blue[0] :, width - blue[1] :, 2] = 255
    return picture
