"""RandomCAM: seeded uniform weights in [-1, 1], shared by the images of a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import RandomCAM
from pytorch_grad_cam import functional as CF


def test_seeded_weights_golden(small_cnn):
    cam = RandomCAM(small_cnn, [small_cnn.block2], seed=7)
    acts = torch.randn(2, 3, 4, 4)
    weights = cam.get_cam_weights(None, small_cnn.block2, None, acts, None)
    # torch's Mersenne Twister, seed 7: rand(3) = [0.5349, 0.1988, 0.6592] -> 2u - 1
    expected = torch.tensor([0.06984508, -0.60239363, 0.31842339])
    torch.testing.assert_close(weights, expected.expand(2, 3))


def test_maps_are_the_weighted_activations(linear_head_net):
    model = linear_head_net([1.0, 1.0], [[1.0] * 8])
    x = torch.tensor([[[[1.0, 0.0], [3.0, 2.0]]]])
    # seed 0: w = [-0.0075, 0.5364]; the map is (w0 + w1) x > 0 -> x / 3
    cam = RandomCAM(model, [model.features], seed=0)(x)
    np.testing.assert_allclose(cam, [[[1 / 3, 0.0], [1.0, 2 / 3]]], atol=1e-6)


def test_weights_lie_in_the_unit_interval(small_cnn):
    cam = RandomCAM(small_cnn, [small_cnn.block2], seed=3)
    weights = cam.get_cam_weights(None, small_cnn.block2, None, torch.zeros(1, 4000, 1, 1), None)
    assert weights.min() >= -1 and weights.max() <= 1
    assert weights.min() < -0.99 and weights.max() > 0.99
    assert abs(float(weights.mean())) < 0.05


def test_seed_makes_calls_reproducible(small_cnn, images):
    x = images(2, size=16)
    a = RandomCAM(small_cnn, [small_cnn.block2], seed=1)(x)
    b = RandomCAM(small_cnn, [small_cnn.block2], seed=1)(x)
    c = RandomCAM(small_cnn, [small_cnn.block2], seed=2)(x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1


def test_unseeded_uses_the_global_generator(small_cnn, images):
    x = images(1, size=16)
    cam = RandomCAM(small_cnn, [small_cnn.block2])
    torch.manual_seed(5)
    a = cam(x)
    torch.manual_seed(5)
    b = cam(x)
    c = cam(x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.0


def test_matches_the_definition(small_cnn, images):
    x = images(2, size=16)
    cam = RandomCAM(small_cnn, [small_cnn.block2], seed=4)
    with torch.no_grad():
        acts = small_cnn.block2(small_cnn.block1(x.clone()))
    weights = torch.rand(16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    raw = torch.einsum("c,bchw->bhw", weights, acts)
    expected = CF.aggregate_layers([CF.layer_cam_to_unit(raw, (16, 16))])
    np.testing.assert_allclose(cam(x), expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("seed", [1.5, "0", True])
def test_bad_seed(small_cnn, seed):
    with pytest.raises(TypeError, match="seed must be"):
        RandomCAM(small_cnn, [small_cnn.block2], seed=seed)
