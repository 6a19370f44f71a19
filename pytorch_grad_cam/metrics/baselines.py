"""Trivial maps every score is read against: a random map, a centre Gaussian, and the image's edges.

A method whose score does not beat these has not shown that it explains the model: the centre
Gaussian wins on photos whose objects sit in the middle, the edge map
(:func:`~pytorch_grad_cam.sobel_cam.sobel_cam`, 1.5.x's image-only baseline) wherever objects have
edges, and neither depends on the model (so both fail the randomisation test of Adebayo et al.
2018 by construction).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pytorch_grad_cam.sobel_cam import sobel_cam

#: The baselines' names, as the evaluation's tables list them.
BASELINES = ("random", "centre", "edges")


def random_maps(batch: int, size: tuple[int, int], *, seed: int = 0) -> torch.Tensor:
    """``(batch, H, W)`` float32 uniform noise in [0, 1), the same for the same ``seed``."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.rand(batch, *size, generator=generator)


def centre_gaussian(batch: int, size: tuple[int, int], *, sigma: float = 0.25) -> torch.Tensor:
    """``(batch, H, W)`` float32 ``exp(-d^2 / 2 sigma^2)``, ``d`` the distance to the centre in units of
    each side (so ``sigma`` is a share of the height and width), maximum 1 at the centre."""
    if not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ValueError(f"sigma must be a positive share of the image side; got {sigma!r}")
    height, width = size
    y = (torch.arange(height, dtype=torch.float64) + 0.5) / height - 0.5
    x = (torch.arange(width, dtype=torch.float64) + 0.5) / width - 0.5
    blob = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return (blob / blob.max()).float().expand(batch, height, width).clone()


def edge_maps(
    images: torch.Tensor, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> torch.Tensor:
    """The Sobel edge magnitude of each image, scaled to [0, 1].

    Args:
        images: ``(B, 3, H, W)`` model inputs, normalised with ``mean`` and ``std`` (undone here
            before the 8-bit gray conversion); None: already RGB in [0, 1].

    Returns:
        ``(B, H, W)`` float32.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, H, W) tensor; got {getattr(images, 'shape', images)!r}")
    pixels = images.detach().float().cpu()
    if mean is not None and std is not None:
        pixels = pixels * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    rgb = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    edges = np.stack([sobel_cam(np.ascontiguousarray(image)) for image in rgb]).astype(np.float32)
    peak = edges.reshape(len(edges), -1).max(axis=1).clip(min=1).reshape(-1, 1, 1)
    return torch.from_numpy(edges / peak)
