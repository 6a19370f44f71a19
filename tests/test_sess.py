"""SESS: its pieces by hand, the whole against a patch-by-patch re-derivation."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam import SESS, GradCAM
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.sess import (
    fuse_patch_maps,
    resize_shorter_side,
    sliding_window,
    window_starts,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def test_windows_by_hand():
    assert window_starts(10, 4, 4) == [0, 4, 6]  # the last window moved back to end at 10
    assert window_starts(4, 4, 4) == [0] and window_starts(3, 4, 4) == [0]
    assert window_starts(12, 4, 4) == [0, 4, 8]
    assert sliding_window(6, 10, 4, 4) == [(0, 0), (4, 0), (6, 0), (0, 2), (4, 2), (6, 2)]


def test_default_scales(small_cnn):
    sess = SESS(small_cnn, [small_cnn.block2], num_scales=3)
    assert sess.get_scales(16) == [16, 21, 26]  # steps of round(16 * 2 / 7) = 5
    assert SESS(small_cnn, [small_cnn.block2], scales=[20, 16]).get_scales(16) == [20, 16]


def test_resize_equals_torchvision():
    images = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(0))
    for size in (16, 21, 40):
        torch.testing.assert_close(resize_shorter_side(images, size), TF.resize(images, size), rtol=0, atol=0)
    tall = images.transpose(-1, -2)
    torch.testing.assert_close(resize_shorter_side(tall, 21), TF.resize(tall, 21), rtol=0, atol=0)


def test_fusion_by_hand():
    maps = torch.tensor([[[0.5, 0.0, 0.05]], [[0.3, 0.0, 0.2]]])
    # mean of the values above theta = 0.1 at each pixel, 0 where none is
    torch.testing.assert_close(fuse_patch_maps(maps, "mean", 0.1), torch.tensor([[0.4, 0.0, 0.2]]))
    torch.testing.assert_close(fuse_patch_maps(maps, "mean", 0.0), torch.tensor([[0.4, 0.0, 0.125]]))
    torch.testing.assert_close(fuse_patch_maps(maps, "max", 0.1), torch.tensor([[0.5, 0.0, 0.2]]))


def test_one_patch_is_the_base_method(small_cnn, images):
    x = images(2, size=16)
    sess = SESS(small_cnn, [small_cnn.block2], scales=[16], smooth=False)
    expected = GradCAM(small_cnn, [small_cnn.block2])(x, [1, 3])
    np.testing.assert_allclose(sess(x, [1, 3]), expected, atol=1e-6)


def slow_sess(model, layer, image, category, scales, window, step, pre_filter, theta):
    """Patch by patch, with torchvision's resize and one GradCAM call per patch (pool 'mean')."""
    cam = GradCAM(model, [layer])
    target = ClassifierOutputTarget(category)
    height, width = image.shape[-2:]
    patches = []
    for scale in scales:
        scaled = TF.resize(image, scale)
        for x, y in sliding_window(scaled.shape[-2], scaled.shape[-1], step, window):
            patches.append((scaled[:, :, y : y + window, x : x + window], x, y, scaled.shape[-2:]))
    with torch.no_grad():
        scores = [max(float(torch.softmax(model(p), dim=-1)[0, category]), 0.0) for p, *_ in patches]
    order = np.argsort(scores, kind="stable")[int(len(scores) * pre_filter) :]
    best = scores[order[-1]]
    total, count = np.zeros((height, width)), np.zeros((height, width))
    for index in order:
        patch, x, y, size = patches[index]
        canvas = torch.zeros(1, 1, *size)
        canvas[0, 0, y : y + window, x : x + window] = torch.from_numpy(cam(patch, [target])[0]) * (
            scores[index] / best
        )
        pasted = torch.nn.functional.interpolate(canvas, size=(height, width), mode="bilinear")[0, 0].numpy()
        total += np.where(pasted > theta, pasted, 0)
        count += pasted > theta
    fused = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return CF.gaussian_blur(torch.from_numpy(fused).float()[None, None], border="reflect")[0, 0].numpy()


def test_equals_the_patch_by_patch_derivation(used_model, images):
    model = used_model
    x = images(2, size=16)
    before = model_snapshot(model)
    sess = SESS(
        model,
        [model.block2],
        scales=[16, 24],
        window_size=12,
        step_size=6,
        pre_filter_ratio=0.25,
        theta=0.1,
        batch_size=3,
    )
    got = sess(x, [1, 3])
    assert_same_model(before, model_snapshot(model))
    model.eval()
    for index, category in enumerate([1, 3]):
        slow = slow_sess(model, model.block2, x[index : index + 1], category, [16, 24], 12, 6, 0.25, 0.1)
        slow = (slow - slow.min()) / (slow.max() - slow.min() + 1e-7)
        np.testing.assert_allclose(got[index], slow, atol=1e-5)
    # no targets: each image's top class
    with torch.no_grad():
        top = model(x).argmax(dim=1).tolist()
    np.testing.assert_allclose(sess(x), sess(x, top), atol=1e-6)


def test_bad_arguments(small_cnn, images):
    layers = [small_cnn.block2]
    with pytest.raises(ValueError, match="pool must be 'mean' or 'max'"):
        SESS(small_cnn, layers, pool="median")
    with pytest.raises(ValueError, match="pre_filter_ratio must be in"):
        SESS(small_cnn, layers, pre_filter_ratio=1.0)
    with pytest.raises(ValueError, match="num_scales must be an int >= 1"):
        SESS(small_cnn, layers, num_scales=0)
    with pytest.raises(TypeError, match="base_method must be a CAM class"):
        SESS(small_cnn, layers, base_method=len)
    with pytest.raises(ValueError, match="at least the window size 16"):
        SESS(small_cnn, layers, scales=[12])(images(1, size=16))


def test_patch_maps_stay_tensors_until_the_result(small_cnn, images, count_numpy_conversions):
    sess = SESS(small_cnn, [small_cnn.block2], num_scales=2, window_size=12, step_size=4, batch_size=5)
    with count_numpy_conversions() as counts:
        sess(images(2, size=16), [1, 3])
    assert counts == {"numpy": 1, "from_numpy": 0}  # the public result only, not one per patch
