"""A synthetic dataset with known object masks, and a tiny CNN trained on it (for the audit benchmarks).

Each image: dark noise, clutter (short lines and dots, as bright as the objects), and one filled shape
(class 0 circle, 1 square, 2 triangle) in a random bright colour at a random place. The class is the
shape, so a model that learned the task looks at the shape; the clutter gives an edge detector
plenty of edges away from it. Everything is drawn from a seeded numpy generator with OpenCV.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch
from torch import nn

CLASSES = ("circle", "square", "triangle")


def draw_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One ``(size, size, 3)`` uint8 RGB image, its ``(size, size)`` bool object mask and its class."""
    image = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
    for _ in range(int(rng.integers(8, 14))):  # clutter, as bright as the objects
        colour = tuple(int(c) for c in rng.integers(120, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        if rng.random() < 0.6:
            dx, dy = (int(v) for v in rng.integers(-size // 6, size // 6 + 1, 2))
            cv2.line(image, (x, y), (x + dx, y + dy), colour, int(rng.integers(1, 4)))
        else:
            cv2.circle(image, (x, y), int(rng.integers(1, 4)), colour, -1)
    label = int(rng.integers(0, len(CLASSES)))
    radius = int(rng.integers(size // 9, size // 6))
    cx, cy = (int(v) for v in rng.integers(radius + 1, size - radius - 1, 2))
    mask = np.zeros((size, size), dtype=np.uint8)
    if label == 0:
        cv2.circle(mask, (cx, cy), radius, 1, -1)
    elif label == 1:
        cv2.rectangle(mask, (cx - radius, cy - radius), (cx + radius, cy + radius), 1, -1)
    else:
        points = np.array(
            [[cx, cy - radius], [cx - radius, cy + radius], [cx + radius, cy + radius]], np.int32
        )
        cv2.fillPoly(mask, [points], 1)
    image[mask > 0] = rng.integers(120, 256, 3).astype(np.uint8)
    return image, mask > 0, label


def make_dataset(
    count: int, size: int = 64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(count, 3, size, size)`` float inputs in [0, 1], ``(count, size, size)`` bool masks, labels."""
    rng = np.random.default_rng(seed)
    samples = [draw_sample(rng, size) for _ in range(count)]
    images = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2).float() / 255
    masks = torch.from_numpy(np.stack([s[1] for s in samples]))
    return images, masks, torch.tensor([s[2] for s in samples])


class ShapeNet(nn.Module):
    """conv-relu-pool x2, conv-relu (the CAM layer, 1/4 of the input's side), global average, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(64, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def train(seed: int = 0, count: int = 3000, size: int = 64, epochs: int = 6) -> tuple[ShapeNet, float, float]:
    """A seeded :class:`ShapeNet` trained with Adam; returns it (eval mode), the seconds, the accuracy
    on 500 held-out images."""
    torch.manual_seed(seed)
    images, _, labels = make_dataset(count, size, seed=seed)
    model = ShapeNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(count, generator=generator).split(64):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimiser.step()
    seconds = time.perf_counter() - started
    model.eval()
    test_images, _, test_labels = make_dataset(500, size, seed=seed + 1000)
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    return model, seconds, accuracy
