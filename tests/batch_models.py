"""Tiny models for the batch runner's tests, loadable as ``--model tests/batch_models.py:tiny_cnn``.

Not a test module (pytest does not collect it): the command-line tests start the runner in
subprocesses (also under torchrun), which build their model from here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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
