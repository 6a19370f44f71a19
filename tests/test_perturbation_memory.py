"""Perturbation CAMs by default run no perturbation forward larger than the call's own forward.

ScoreCAM's masked inputs and AblationCAM's ablated copies go through the model ``batch_size`` at a
time; with the default (None) that is the input's batch size (issue 18: a call fits where the
model's forward fits). Counted with hooks on the model: value tests, no timing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import ISCAM, SSCAM, AblationCAM, ScoreCAM, score_cam
from pytorch_grad_cam._core.perturbation import inputs_per_pass

#: The maps of two batchings may differ by float reassociation only: a score is a chain of dot
#: products, each of which a different batch size may sum in another order. A reassociated sum of
#: ``n`` float32 terms is off by at most about ``n * eps`` of its terms' magnitudes; the longest dot
#: product here is resnet18's 3x3 convolution over 256 channels (``n = 2304``, layer3). The maps
#: are scaled to [0, 1].
REASSOCIATION = 3 * 3 * 256 * torch.finfo(torch.float32).eps


def model_batches(model, call):
    """The batch size of every forward of ``model`` during ``call()``."""
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(int(args[0].shape[0])))
    try:
        call()
    finally:
        handle.remove()
    return seen


def largest_tensor(model, call):
    """The most elements of one tensor any module of ``model`` received or returned during ``call()``."""
    largest = [0]

    def see(module, args, output):
        for value in (*args, output):
            if isinstance(value, torch.Tensor):
                largest[0] = max(largest[0], value.numel())

    handles = [module.register_forward_hook(see) for module in model.modules()]
    try:
        call()
    finally:
        for handle in handles:
            handle.remove()
    return largest[0]


def test_inputs_per_pass():
    assert [inputs_per_pass(None, b) for b in (0, 1, 5)] == [1, 1, 5]
    assert [inputs_per_pass(32, b) for b in (1, 64)] == [32, 32]


@pytest.mark.parametrize("method", [ScoreCAM, ISCAM])
@pytest.mark.parametrize("batch", [1, 3])
def test_masked_forwards_hold_no_more_images_than_the_input(small_cnn, images, method, batch):
    x = images(batch, size=16)
    cam = method(small_cnn, [small_cnn.block2], progress=False)
    seen = model_batches(small_cnn, lambda: cam(x, [1] * batch))
    assert seen[0] == batch  # the capture
    assert len(seen) > 2 and max(seen[1:]) == batch  # 16 channels: several full passes of `batch`


@pytest.mark.parametrize("method", [ScoreCAM, ISCAM])
def test_every_masked_forward_has_the_calls_batch_size(small_cnn, images, method, monkeypatch):
    """On CPU each new input shape leaves cached convolution state in the process (resnet50: about
    0.9 MB a shape, kept after the call; issue 18's ScoreCAM at batch 16 was 1.93x the forward
    from it): an image's partial last pass is padded to the pass size, so no new shape is run."""
    x = images(3, size=16)
    cam = method(small_cnn, [small_cnn.block2], progress=False)
    assert set(model_batches(small_cnn, lambda: cam(x, [1, 2, 3]))) == {3}
    scored = cam.masks_scored
    monkeypatch.setattr(score_cam, "pad_batch", lambda inputs, size: inputs)  # the code before
    assert set(model_batches(small_cnn, lambda: cam(x, [1, 2, 3]))) == {1, 3}  # 16 masks an image
    assert cam.masks_scored == scored  # the padding rows are not counted


def test_padding_leaves_the_maps_and_the_noise_as_they_were(small_cnn, images, monkeypatch):
    """The maps with the last passes padded equal those without (float reassociation only); SS-CAM's
    noise is drawn for the real rows only, so its seeded maps are unchanged too."""
    x = images(3, size=16, seed=4)
    layer = small_cnn.block2
    cams = {
        "score": lambda: ScoreCAM(small_cnn, [layer], progress=False),
        "is": lambda: ISCAM(small_cnn, [layer], num_samples=3, progress=False),
        "ss": lambda: SSCAM(small_cnn, [layer], num_samples=3, seed=7, progress=False),
    }
    padded = {}
    for name, build in cams.items():
        cam = build()
        padded[name] = cam(x, [1, 2, 3]), cam.masks_scored
    monkeypatch.setattr(score_cam, "pad_batch", lambda inputs, size: inputs)  # the code before
    for name, build in cams.items():
        cam = build()
        unpadded = cam(x, [1, 2, 3])
        assert unpadded.std() > 0.1, name  # maps with structure
        assert padded[name][1] == cam.masks_scored, name
        np.testing.assert_allclose(padded[name][0], unpadded, rtol=0, atol=REASSOCIATION, err_msg=name)


def test_an_explicit_batch_size_keeps_its_meaning(small_cnn, images):
    cam = ScoreCAM(small_cnn, [small_cnn.block2], batch_size=5, progress=False)
    seen = model_batches(small_cnn, lambda: cam(images(1, size=16), [1]))
    assert max(seen[1:]) == 5
    cam = AblationCAM(small_cnn, [small_cnn.block2], batch_size=5)
    cam(images(1, size=16), [1])
    assert cam.batch_size == 5


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize(
    "layer, route", [("block2", "pooled"), ("block1", "cached"), ("block_conv1", "prefix")]
)
def test_ablation_passes_hold_about_the_forwards_largest_tensor(
    small_cnn, tiny_residual_net, images, batch, layer, route
):
    model = tiny_residual_net if layer == "block_conv1" else small_cnn
    x = images(batch, size=16)
    with torch.no_grad():
        forward = largest_tensor(model, lambda: model(x))
    cam = AblationCAM(model, [getattr(model, layer)])
    during = largest_tensor(model, lambda: cam(x, [1] * batch))
    assert cam.routes == [route]
    # a pass holds `batch` ablated copies and one unablated copy that checks the route: at most one
    # image's share more than the forward's largest tensor (with batch_size=32: 33 copies)
    assert during <= forward * (batch + 1) // batch


def test_score_cam_maps_equal_the_old_batching(resnet18, images):
    """The default (one masked image per pass for one image) against 1.5.x's 16 per pass."""
    x = images(1, size=32, seed=1)
    layer = resnet18.layer3[-1]  # 2x2 positions, 256 channels
    old = ScoreCAM(resnet18, [layer], batch_size=16, progress=False)(x, [3])
    new = ScoreCAM(resnet18, [layer], progress=False)(x, [3])
    assert old.max() == pytest.approx(1.0) and old.std() > 0.1  # a map with structure
    np.testing.assert_allclose(new, old, rtol=0, atol=REASSOCIATION)


def test_ablation_cam_maps_equal_the_old_batching(resnet18, images):
    """The default (2 ablated copies per pass for 2 images) against 1.5.x's 32 per pass."""
    x = images(2, size=32, seed=2)
    layer = resnet18.layer3[-1]  # 2x2 positions: the cached route (no pool right after it)
    options = {"ratio_channels_to_ablate": 0.25}  # the 64 strongest of 256 channels: quicker
    old_cam = AblationCAM(resnet18, [layer], batch_size=32, **options)
    old = old_cam(x, [5, 1])
    new_cam = AblationCAM(resnet18, [layer], **options)
    new = new_cam(x, [5, 1])
    assert old_cam.routes == new_cam.routes == ["cached"]
    assert old.std() > 0.1
    np.testing.assert_allclose(new, old, rtol=0, atol=REASSOCIATION)
