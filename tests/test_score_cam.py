"""ScoreCAM: hand-computed weights, the slow definition, de-duplication, batching, hygiene, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DuplicateChannels, assert_same_model, layer_output, model_snapshot

from pytorch_grad_cam import ScoreCAM
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform


def vit_transform(t):
    return vit_reshape_transform(t, 4, 4)


def reference_weights(model, layer, x, classes, transform=None):
    """The definition, one channel at a time: mask, one forward of the whole network, softmax."""
    acts = layer_output(model, layer, x, transform)
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    weights = []
    for b, category in enumerate(classes):
        scores = []
        for k in range(acts.shape[1]):
            up = F.interpolate(acts[b : b + 1, k : k + 1], size=x.shape[2:], mode=mode, align_corners=True)
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                scores.append(model(x[b : b + 1] * mask)[0, category])
        weights.append(torch.softmax(torch.stack(scores), dim=0))
    return torch.stack(weights), acts


def reference_cam(model, layers, x, classes, transform=None, eigen_smooth=False):
    maps = []
    for layer in layers:
        weights, acts = reference_weights(model, layer, x, classes, transform)
        weighted = CF.expand_weights(weights, acts) * acts
        raw = CF.first_principal_component(weighted) if eigen_smooth else weighted.sum(1)
        maps.append(CF.layer_cam_to_unit(raw, x.shape[2:]))
    return CF.aggregate_layers(maps).numpy()


# -- golden values by hand --------------------------------------------------------------------------


def test_golden_weights_and_maps(linear_head_net):
    # A_0 = x, A_1 = -x with x = [-1, 2, 4] on a 1x3 grid (upsampling to 1x3 is the identity).
    # M_0 = (x + 1) / 5 = [0, 3, 5] / 5 and M_1 = (4 - x) / 5 = [5, 2, 0] / 5;
    # x * M_0 = [0, 6/5, 4] and x * M_1 = [-1, 4/5, 0].
    # Class 0: logit = x'_0 + x'_1 - (-x'_2) * 1 = x'_0 + x'_1 + x'_2 -> scores 26/5 and -1/5.
    # Class 1: logit = -x'_0 -> scores 0 and 1.
    model = linear_head_net([1.0, -1.0], [[1, 1, 0, 0, 0, -1], [-1, 0, 0, 0, 0, 0]])
    x = torch.tensor([[[[-1.0, 2.0, 4.0]]]])
    acts = torch.cat([x, -x], dim=1)
    cam = ScoreCAM(model, [model.features])
    for category, scores in ((0, [26 / 5, -1 / 5]), (1, [0.0, 1.0])):
        weights = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(category)], acts, None)
        total = sum(math.exp(s) for s in scores)
        torch.testing.assert_close(weights, torch.tensor([[math.exp(s) / total for s in scores]]))
    # CAM = (w_0 - w_1) x: class 0 has w_0 > w_1, so relu(x) scaled; class 1 has w_1 > w_0: relu(-x)
    np.testing.assert_allclose(cam(x, [0])[0, 0], [0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(cam(x, [1])[0, 0], [1.0, 0.0, 0.0], atol=1e-6)
    assert cam.masks_scored == 2


# -- the definition, batching, de-duplication --------------------------------------------------------


def test_equals_the_definition_and_batch_size_does_not_matter(small_cnn, images):
    x = images(3, size=16)
    classes = [0, 3, 1]
    expected = reference_cam(small_cnn, [small_cnn.block2], x, classes)
    for batch_size in (1, 7, 512):
        got = ScoreCAM(small_cnn, [small_cnn.block2], batch_size=batch_size)(x, classes)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_several_layers_and_eigen_smooth(small_cnn, images):
    x = images(2, size=16)
    layers = [small_cnn.block1, small_cnn.block2]
    got = ScoreCAM(small_cnn, layers, batch_size=16)(x, [2, 4], eigen_smooth=True)
    np.testing.assert_allclose(got, reference_cam(small_cnn, layers, x, [2, 4], eigen_smooth=True), atol=1e-5)


def test_aug_smooth_is_the_mean_of_the_six_views(small_cnn, images):
    x = images(1, size=16)
    cam = ScoreCAM(small_cnn, [small_cnn.block2])
    views = []
    for flip in (False, True):
        for factor in (1.0, 0.9, 1.1):
            view = x * factor
            view = view.flip(-1) if flip else view
            out = reference_cam(small_cnn, [small_cnn.block2], view, [3])
            views.append(out[..., ::-1] if flip else out)
    np.testing.assert_allclose(cam(x, [3], aug_smooth=True), np.mean(views, axis=0), atol=1e-5)
    assert cam.masks_scored <= 6 * 16


class EveryChannelScoreCAM(ScoreCAM):
    """No de-duplication: every channel's mask is scored."""

    def _mask_keys(self, channels):
        return None


def test_identical_masks_are_scored_once_with_the_same_numbers(images):
    model = DuplicateChannels().eval()
    x = images(2, size=8)
    batches = []
    handle = model.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        cam = ScoreCAM(model, [model.features], batch_size=2)
        got = cam(x, [0, 2])
    finally:
        handle.remove()
    assert cam.masks_scored == 2 * 3
    assert batches[0] == 2 and max(batches[1:]) <= 2  # the capture, then at most batch_size at a time
    every = EveryChannelScoreCAM(model, [model.features], batch_size=4)
    np.testing.assert_allclose(got, every(x, [0, 2]), atol=1e-6)
    assert every.masks_scored == 2 * 6
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [0, 2]), atol=1e-5)


def test_scoring_runs_in_inference_mode_without_item(small_cnn, images, monkeypatch):
    modes = []
    handle = small_cnn.register_forward_pre_hook(lambda m, a: modes.append(torch.is_inference_mode_enabled()))

    def no_item(self):
        raise AssertionError(".item() called")

    monkeypatch.setattr(torch.Tensor, "item", no_item)
    try:
        ScoreCAM(small_cnn, [small_cnn.block2], batch_size=5)(images(2, size=16), [1, 2])
    finally:
        handle.remove()
    assert modes[0] is False and len(modes) > 2 and all(modes[1:])


# -- layouts and inputs -----------------------------------------------------------------------------


def test_vit_token_layout(tiny_vit, images):
    x = images(2, size=16)
    layer = tiny_vit.blocks[-1].norm1
    got = ScoreCAM(tiny_vit, [layer], reshape_transform=vit_transform, batch_size=5)(x, [1, 3])
    np.testing.assert_allclose(got, reference_cam(tiny_vit, [layer], x, [1, 3], vit_transform), atol=1e-5)


def test_3d_input(small_cnn3d):
    x = torch.randn(1, 3, 6, 8, 8, generator=torch.Generator().manual_seed(2))
    got = ScoreCAM(small_cnn3d, [small_cnn3d.block2], batch_size=6)(x, [2])
    assert got.shape == (1, 6, 8, 8)
    np.testing.assert_allclose(got, reference_cam(small_cnn3d, [small_cnn3d.block2], x, [2]), atol=1e-5)


def test_api_generations(small_cnn, images):
    x = images(1, size=16)
    expected = ScoreCAM(small_cnn, [small_cnn.block2])(x, [1])
    seed = ScoreCAM(model=small_cnn, target_layer=small_cnn.block2, use_cuda=False)
    seed.batch_size = 3  # the original API's attribute
    np.testing.assert_allclose(seed(input_tensor=x, target_category=1), expected, atol=1e-6)
    identity = lambda t: t  # noqa: E731
    legacy = ScoreCAM(small_cnn, [small_cnn.block2], identity)  # 1.5.x: reshape_transform third
    assert legacy.reshape_transform is identity
    np.testing.assert_allclose(legacy(x, [1]), expected, atol=1e-6)


# -- progress bar -----------------------------------------------------------------------------------


def test_progress_bar(small_cnn, images, capsys):
    x = images(1, size=16)
    ScoreCAM(small_cnn, [small_cnn.block2], progress=True)(x, [0])
    assert "ScoreCAM" in capsys.readouterr().err
    ScoreCAM(small_cnn, [small_cnn.block2], progress=False)(x, [0])
    ScoreCAM(small_cnn, [small_cnn.block2])(x, [0])  # default: stderr is not a terminal here
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# -- the user's model and bad arguments --------------------------------------------------------------


def test_model_untouched_after_success_and_exception(used_model, images):
    before = model_snapshot(used_model)
    cam = ScoreCAM(used_model, [used_model.block2], batch_size=4)
    out = cam(images(2, size=16), [0, 1], aug_smooth=True, eigen_smooth=True)
    assert np.isfinite(out).all() and out.max() > 0.5
    assert_same_model(before, model_snapshot(used_model))

    calls = []

    def failing_target(output):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return output[0]

    with pytest.raises(RuntimeError, match="boom"):
        cam(images(1, size=16), [failing_target])
    assert_same_model(before, model_snapshot(used_model))
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_batch_size(small_cnn, value, error):
    with pytest.raises(error, match="batch_size"):
        ScoreCAM(small_cnn, [small_cnn.block2], batch_size=value)
    cam = ScoreCAM(small_cnn, [small_cnn.block2])
    with pytest.raises(error, match="batch_size"):
        cam.batch_size = value
    assert cam.batch_size == 32


def test_bad_progress(small_cnn):
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        ScoreCAM(small_cnn, [small_cnn.block2], progress="yes")
