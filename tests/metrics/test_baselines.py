"""metrics.baselines: the centre Gaussian's values, the edge map is 1.5.x's sobel_cam, random maps repeat."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam.metrics.baselines import centre_gaussian, edge_maps, random_maps
from pytorch_grad_cam.sobel_cam import sobel_cam


def test_centre_gaussian_hand_computed():
    blob = centre_gaussian(2, (2, 4), sigma=0.5)
    # pixel centres at y = -0.25, 0.25 and x = -0.375, -0.125, 0.125, 0.375 (shares of the side);
    # divided by the largest value (x = +-0.125)
    peak = math.exp(-(0.25**2 + 0.125**2) / 0.5)
    expected = [[math.exp(-(0.25**2 + x**2) / 0.5) / peak for x in (-0.375, -0.125, 0.125, 0.375)]] * 2
    torch.testing.assert_close(blob, torch.tensor([expected, expected]), rtol=0, atol=1e-7)


def test_edge_maps_are_sobel_cam_scaled():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(2, 9, 7, 3)).astype(np.uint8)
    images = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalised = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    maps = edge_maps(normalised, mean=mean, std=std)
    for i in range(2):
        edges = sobel_cam(rgb[i]).astype(np.float32)
        np.testing.assert_allclose(maps[i].numpy(), edges / edges.max(), rtol=0, atol=1e-6)


def test_random_maps_repeat_for_a_seed():
    assert torch.equal(random_maps(2, (3, 3), seed=4), random_maps(2, (3, 3), seed=4))
    assert not torch.equal(random_maps(2, (3, 3), seed=4), random_maps(2, (3, 3), seed=5))


def test_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        centre_gaussian(1, (4, 4), sigma=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        edge_maps(torch.rand(1, 1, 4, 4))
