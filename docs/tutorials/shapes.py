"""Generated pictures of shapes, and small networks trained on them in seconds, for the tutorials.

Where no pretrained weights can be had offline, a tutorial trains one of these networks, so that
its maps explain a model that has learned something. Every image is 32 x 32: a noisy background and
a 4 x 4 grid of 8 x 8 cells, some holding a shape in a random colour. The class shapes are a plus
(0), a ring (1), a diagonal (2) and a checkerboard (3); two more shapes (a filled square, an "L")
are distractors no class uses. Because the generator knows where it put each shape, a map can be
checked against the right region.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

SIZE, CELL, CLASSES = 32, 8, 4
CLASS_NAMES = ("plus", "ring", "diagonal", "checkerboard")


def _masks() -> torch.Tensor:
    """``(6, 8, 8)`` 0/1 masks: the four class shapes, then the two distractors."""
    index = torch.arange(8)
    plus = torch.zeros(8, 8)
    plus[3:5, 1:7] = 1
    plus[1:7, 3:5] = 1
    ring = torch.ones(8, 8)
    ring[2:6, 2:6] = 0
    ring[[0, 0, 7, 7], [0, 7, 0, 7]] = 0
    diagonal = (index[:, None] - index[None, :]).abs().le(1).float()
    checker = ((index[:, None] // 2 + index[None, :] // 2) % 2).float()
    square = torch.zeros(8, 8)
    square[1:7, 1:7] = 1
    ell = torch.zeros(8, 8)
    ell[1:7, 1:3] = 1
    ell[5:7, 1:7] = 1
    return torch.stack([plus, ring, diagonal, checker, square, ell])


MASKS = _masks()


def draw(
    kinds: Sequence[int], places: Sequence[int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image ``(3, 32, 32)`` with shape ``kinds[i]`` in cell ``places[i]`` (0..15, row-major),
    and its label map ``(32, 32)``: the class index + 1 where a class shape's pixels are, else 0."""
    image = 0.3 * torch.randn(3, SIZE, SIZE, generator=generator)
    labels = torch.zeros(SIZE, SIZE, dtype=torch.long)
    for kind, place in zip(kinds, places):
        y, x = (place // 4) * CELL, (place % 4) * CELL
        colour = 0.5 + torch.rand(3, 1, 1, generator=generator) * 1.5
        colour = colour * torch.where(torch.rand(3, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
        mask = MASKS[kind]
        cell = image[:, y : y + CELL, x : x + CELL]
        image[:, y : y + CELL, x : x + CELL] = cell * (1 - mask) + colour * mask
        if kind < CLASSES:
            labels[y : y + CELL, x : x + CELL][mask > 0] = kind + 1
    return image, labels


def batch(
    size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``size`` images with one class shape and two distractors each.

    Returns:
        images ``(B, 3, 32, 32)``, labels ``(B,)``, the class shape's cell box ``(B, 4)`` as
        ``y0, x0, y1, x1``, and the label maps ``(B, 32, 32)``.
    """
    images, labels, boxes, maps = [], [], [], []
    for _ in range(size):
        label = int(torch.randint(0, CLASSES, (1,), generator=generator))
        places = torch.randperm(16, generator=generator)[:3].tolist()
        kinds = [label] + [CLASSES + int(k) for k in torch.randint(0, 2, (2,), generator=generator)]
        image, label_map = draw(kinds, places, generator)
        y, x = (places[0] // 4) * CELL, (places[0] % 4) * CELL
        images.append(image)
        labels.append(label)
        boxes.append(torch.tensor([y, x, y + CELL, x + CELL]))
        maps.append(label_map)
    return torch.stack(images), torch.tensor(labels), torch.stack(boxes), torch.stack(maps)


class ShapesNet(nn.Module):
    """A small CNN: three conv blocks to an 8 x 8 map of 32 channels, global average pool, linear."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(B, 32)``: the network as an embedding model."""
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


def train(
    model: nn.Module, steps: int, loss_of, seed: int = 0, lr: float = 3e-3, size: int = 64
) -> nn.Module:
    """Train ``model`` with Adam for ``steps`` batches of ``size`` drawn from a seeded pool of
    generated images (``32 * size`` of them, fewer for a short run); ``loss_of(model, batch)``
    gives the loss."""
    generator = torch.Generator().manual_seed(seed)
    pool = batch(min(32, max(4, steps // 4)) * size, generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(pool[0]), (size,), generator=generator)
        loss = loss_of(model, tuple(part[pick] for part in pool))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == steps:
            print(
                f"\rtraining: step {step}/{steps}, loss {loss.item():.3f}, "
                f"{time.perf_counter() - start:.0f} s",
                end="",
                flush=True,
            )
    print()
    return model.eval()


def classification_loss(model: nn.Module, data) -> torch.Tensor:
    images, labels, _, _ = data
    return nn.functional.cross_entropy(model(images), labels)


def trained_classifier(steps: int) -> ShapesNet:
    """A seeded :class:`ShapesNet` trained for ``steps`` steps (400: about 99% accurate, seconds)."""
    torch.manual_seed(0)
    return train(ShapesNet(), steps, classification_loss)


def accuracy(model: nn.Module, images: int = 512) -> float:
    data = batch(images, torch.Generator().manual_seed(12345))
    with torch.no_grad():
        return float((model(data[0]).argmax(1) == data[1]).float().mean())
