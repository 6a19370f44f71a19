"""SS-CAM: hand-computed weights without noise, torchcam's definition with seeded noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import layer_output

from pytorch_grad_cam import SSCAM
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def reference_cam(model, layer, x, classes, num_samples, std, seed):
    """torchcam 0.5's SS-CAM for ``batch_size >= C``: per image and sample, one (C, *S) noise draw."""
    acts = layer_output(model, layer, x)
    channels = acts.shape[1]
    torch.manual_seed(seed)
    weights = []
    for b, category in enumerate(classes):
        a = acts[b : b + 1]
        flat = (a - a.flatten(2).amin(2)[..., None, None]).flatten(2)
        normalised = (flat / (flat.amax(2, keepdim=True) + 1e-8)).reshape(a.shape)
        masks = F.interpolate(normalised, size=x.shape[2:], mode="bilinear", align_corners=False)[0]
        totals = torch.zeros(channels)
        for _ in range(num_samples):
            noisy = masks + torch.randn(masks.shape) * std
            with torch.no_grad():
                totals += model(noisy[:, None] * x[b : b + 1])[:, category]
        weights.append(torch.softmax(totals / num_samples, dim=0))
    weights = torch.stack(weights)
    return CF.aggregate_layers([CF.layer_cam_to_unit(CF.weighted_sum(weights, acts), x.shape[2:])]).numpy()


def test_golden_weights_without_noise(linear_head_net):
    # std = 0: the masks are torchcam's normalised maps N_0 = [0, 3, 5] / 5 and N_1 = [5, 2, 0] / 5 of
    # A_0 = x = [-1, 2, 4] and A_1 = -x; class 0 sums the masked input: scores 26/5 and -1/5.
    model = linear_head_net([1.0, -1.0], [[1, 1, 0, 0, 0, -1]])
    x = torch.tensor([[[[-1.0, 2.0, 4.0]]]])
    cam = SSCAM(model, [model.features], num_samples=4, std=0.0)
    weights = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(0)], torch.cat([x, -x], 1), None)
    scores = [26 / 5, -1 / 5]
    total = sum(math.exp(s) for s in scores)
    torch.testing.assert_close(weights, torch.tensor([[math.exp(s) / total for s in scores]]))
    assert cam.masks_scored == 2 * 4  # no de-duplication: each channel gets its own noise


def test_seeded_noise_equals_torchcams_definition(small_cnn, images):
    x = images(2, size=8)
    torch.manual_seed(5)
    got = SSCAM(small_cnn, [small_cnn.block2], batch_size=16, num_samples=3, std=0.5)(x, [2, 0])
    expected = reference_cam(small_cnn, small_cnn.block2, x, [2, 0], num_samples=3, std=0.5, seed=5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # batch_size above the channel count packs several samples in a pass and draws the same noise
    torch.manual_seed(5)
    packed = SSCAM(small_cnn, [small_cnn.block2], batch_size=48, num_samples=3, std=0.5)(x, [2, 0])
    np.testing.assert_allclose(packed, expected, atol=1e-5)
    torch.manual_seed(6)
    other = SSCAM(small_cnn, [small_cnn.block2], batch_size=16, num_samples=3, std=0.5)(x, [2, 0])
    assert np.abs(other - got).max() > 1e-3  # the noise matters


def test_a_seed_gives_each_image_its_own_reproducible_noise(small_cnn, images):
    x = images(2, size=8)
    cam = SSCAM(small_cnn, [small_cnn.block2], batch_size=16, num_samples=2, std=0.5, seed=3)
    batch = cam(x, [2, 0])
    np.testing.assert_allclose(cam(x[1:], [0]), batch[1:], atol=1e-5)  # alone = in the batch
    # the seeded generator draws what the global one draws after torch.manual_seed(seed)
    for index, category in enumerate([2, 0]):
        expected = reference_cam(
            small_cnn, small_cnn.block2, x[index : index + 1], [category], 2, 0.5, seed=3
        )
        np.testing.assert_allclose(batch[index : index + 1], expected, atol=1e-5)
    global_state = torch.get_rng_state()
    cam(x, [2, 0])
    assert torch.equal(torch.get_rng_state(), global_state)  # the global generator is not used


@pytest.mark.parametrize("std, error", [(-1.0, ValueError), (float("nan"), ValueError), ("2", TypeError)])
def test_bad_std(small_cnn, std, error):
    with pytest.raises(error, match="std"):
        SSCAM(small_cnn, [small_cnn.block2], std=std)


@pytest.mark.parametrize("seed", [1.5, True, "0"])
def test_bad_seed(small_cnn, seed):
    with pytest.raises(TypeError, match="seed must be an int or None"):
        SSCAM(small_cnn, [small_cnn.block2], seed=seed)
