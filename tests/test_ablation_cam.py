"""AblationCAM: hand-computed weights, the fast path against the full-network definition, the
fallback, layouts (ViT, feature pyramids), API forms, hygiene and errors."""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_model, layer_output, model_snapshot
from torch import nn

from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._ablation.routes import LayerRoutes
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerFasterRCNN, AblationLayerVit
from pytorch_grad_cam.errors import BlankMapWarning
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform


def vit_transform(t):
    return vit_reshape_transform(t, 4, 4)


def default_ablation(output, k, axis):
    """Channel k (index k along ``axis``) set to 0, or to min - 1e7 if the output has negatives."""
    low = output.min()
    index = [slice(None)] * output.dim()
    index[axis] = k
    output[tuple(index)] = 0.0 if low >= 0 else low - 1e7


def reference_weights(model, layer, x, classes, axis=1, ablate=default_ablation, only=None):
    """The definition: per image and channel, the whole network on that image with the channel ablated.

    ``only``: compute just these channels (the others get weight 0).
    """
    weights = []
    for b, category in enumerate(classes):
        image = x[b : b + 1]
        with torch.no_grad():
            y = model(image)[0, category]
        channels = layer_output(model, layer, image).shape[axis]
        ablated = []
        for k in range(channels):
            if only is not None and k not in only:
                ablated.append(y)
                continue

            def hook(module, inputs, output, k=k):
                output = output.clone()
                ablate(output, k, axis)
                return output

            handle = layer.register_forward_hook(hook)
            try:
                with torch.no_grad():
                    ablated.append(model(image)[0, category])
            finally:
                handle.remove()
        ablated = torch.stack(ablated)
        weights.append((y - ablated) / (y if y != 0 else 1.0))
    return torch.stack(weights)


def reference_cam(model, layers, x, classes, transform=None, axis=1, eigen_smooth=False):
    maps = []
    for layer in layers:
        weights = reference_weights(model, layer, x, classes, axis)
        acts = layer_output(model, layer, x, transform)
        weighted = CF.expand_weights(weights, acts) * acts
        raw = CF.first_principal_component(weighted) if eigen_smooth else weighted.sum(1)
        maps.append(CF.layer_cam_to_unit(raw, x.shape[2:]))
    return CF.aggregate_layers(maps).numpy()


def run_without_warnings(cam, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cam(*args, **kwargs)
    caught = [w for w in caught if not issubclass(w.category, BlankMapWarning)]  # a blank map is explained
    assert not caught, [str(w.message) for w in caught]
    assert cam.used_fallback is False
    return result


# -- golden values by hand --------------------------------------------------------------------------


def test_golden_weights_non_negative_layer(linear_head_net):
    # A_0 = x, A_1 = 2x, x = [1, 2, 4] >= 0: ablated channels are set to 0.
    # Class 0 reads h_0 = [1, 0, 1] on A_0 and h_1 = [0, 1, 1] on A_1:
    # y = h_0.x + 2 h_1.x = 5 + 12 = 17, y_0 = 12, y_1 = 5, so w = [5/17, 12/17].
    model = linear_head_net([1.0, 2.0], [[1, 0, 1, 0, 1, 1]])
    x = torch.tensor([[[[1.0, 2.0, 4.0]]]])
    cam = AblationCAM(model, [model.features])
    weights = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(0)], model.features(x), None)
    torch.testing.assert_close(weights, torch.tensor([[5 / 17, 12 / 17]]))
    # CAM = (5/17 + 24/17) x: min-max scaled x
    np.testing.assert_allclose(cam(x, [0])[0, 0], [0.0, 1 / 3, 1.0], atol=1e-6)


def test_golden_weights_layer_with_negative_values(linear_head_net):
    # A_0 = x, A_1 = -x, x = [1, 2, 4]: the image's minimum is -4, so an ablated channel is set to
    # v = -4 - 1e7 everywhere. y = h_0.x - h_1.x = 5 - 6 = -1;
    # y_0 = 2v - 6 = -20000014, y_1 = 5 + 2v = -19999995;
    # w_k = (y - y_k) / y: w_0 = -20000013, w_1 = -19999994.
    model = linear_head_net([1.0, -1.0], [[1, 0, 1, 0, 1, 1]])
    x = torch.tensor([[[[1.0, 2.0, 4.0]]]])
    cam = AblationCAM(model, [model.features])
    weights = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(0)], model.features(x), None)
    torch.testing.assert_close(weights, torch.tensor([[-20000013.0, -19999994.0]]), rtol=1e-6, atol=0)
    # CAM = (w_0 - w_1) x = -19 x < 0 everywhere: an all-zero map
    np.testing.assert_array_equal(cam(x, [0]), np.zeros((1, 1, 3), dtype=np.float32))


def test_golden_zero_score_uses_the_absolute_drop(linear_head_net):
    # A_0 = A_1 = x >= 0, class 0 = sum(A_0) - sum(A_1): y = 0; y_0 = -7, y_1 = 7.
    # The safe rule: w_k = y - y_k = [7, -7], never NaN.
    model = linear_head_net([1.0, 1.0], [[1, 1, 1, -1, -1, -1]])
    x = torch.tensor([[[[1.0, 2.0, 4.0]]]])
    cam = AblationCAM(model, [model.features])
    weights = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(0)], model.features(x), None)
    torch.testing.assert_close(weights, torch.tensor([[7.0, -7.0]]))
    out = cam(x, [0])
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.zeros((1, 1, 3), dtype=np.float32))


# -- the fast path equals the full-network definition ------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_conv_layers_equal_the_definition(small_cnn, images, batch_size):
    x = images(2, size=16)
    for layer in (small_cnn.block2, small_cnn.block1[0]):  # after a ReLU (0), and with negatives
        cam = AblationCAM(small_cnn, [layer], batch_size=batch_size)
        got = run_without_warnings(cam, x, [1, 4])
        np.testing.assert_allclose(got, reference_cam(small_cnn, [layer], x, [1, 4]), atol=1e-5)
        assert cam.routes == ["pooled" if layer is small_cnn.block2 else "cached"]


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_layer_inside_a_residual_block_equals_the_definition(tiny_residual_net, images, batch_size):
    model = tiny_residual_net
    x = images(2, size=12)
    cam = AblationCAM(model, [model.block_conv1], batch_size=batch_size)
    got = run_without_warnings(cam, x, [0, 3])
    np.testing.assert_allclose(got, reference_cam(model, [model.block_conv1], x, [0, 3]), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_transformer_equals_the_definition(tiny_vit, images, batch_size):
    x = images(2, size=16)
    layer = tiny_vit.blocks[-1].norm1
    expected = reference_cam(tiny_vit, [layer], x, [1, 2], vit_transform, axis=-1)
    for ablation_layer in (None, AblationLayerVit()):
        cam = AblationCAM(
            tiny_vit,
            [layer],
            reshape_transform=vit_transform,
            batch_size=batch_size,
            ablation_layer=ablation_layer,
        )
        np.testing.assert_allclose(run_without_warnings(cam, x, [1, 2]), expected, atol=1e-5)


def test_resnet18_layer_with_downsampling_skip(resnet18, images):
    layer = resnet18.layer4[0].conv2  # inside the block whose skip connection is downsampled
    x = images(1, size=32)
    cam = AblationCAM(resnet18, [layer], batch_size=64, ratio_channels_to_ablate=0.05)
    acts = layer_output(resnet18, layer, x)
    got = cam.get_cam_weights(x, layer, [ClassifierOutputTarget(7)], acts, None)
    strongest = acts[0].abs().flatten(1).mean(1).argsort(descending=True)[: int(0.05 * 512)].tolist()
    expected = reference_weights(resnet18, layer, x, [7], only=set(strongest))
    assert expected[0, strongest].abs().max() > 1e-3
    # The tolerance from float32 arithmetic, not from AblationCAM: each score y_k is a logit
    # computed by sums that run in another order at another batch size. Rounding error grows about
    # as sqrt(n) * eps * (the size of the terms) for n terms (the probabilistic bound); here n is
    # the accumulation length after the layer, layer4[1]'s two 3x3x512 convolutions and the
    # 512-input fc, and the terms are about the size of the logits. w_k = (y - y_k) / y carries
    # the errors of y and y_k over |y| (y = -0.036 here, so this is about 8e-4).
    with torch.no_grad():
        logits = resnet18(x)
    y = logits[0, 7].abs()
    length = 2 * 3 * 3 * 512 + 512
    score_error = torch.finfo(torch.float32).eps * math.sqrt(length) * logits.abs().max()
    torch.testing.assert_close(got, expected, rtol=0, atol=float(2 * score_error / y))
    assert not cam.used_fallback


def record_batches(*modules):
    """Hooks that append each module's input batch size to a list; returns (lists, handles)."""
    lists = [[] for _ in modules]
    handles = [
        module.register_forward_pre_hook(lambda m, a, seen=seen: seen.append(a[0].shape[0]))
        for module, seen in zip(modules, lists)
    ]
    return lists, handles


def test_the_network_before_the_layer_runs_once_per_image(small_cnn, images):
    # block2[0]'s output is all the rest of the network uses: its output from the capture is reused
    # and the network before it runs on an empty batch. 16 channels + the unablated copy = 17 copies.
    (prefix, head), handles = record_batches(small_cnn.block1, small_cnn.fc)
    try:
        cam = AblationCAM(small_cnn, [small_cnn.block2[0]], batch_size=6)
        run_without_warnings(cam, images(2, size=8), [0, 1])
    finally:
        for handle in handles:
            handle.remove()
    assert prefix == [2] + [0, 0, 0] * 2  # the capture, then nothing
    assert head == [2] + [6, 7, 6] * 2  # the later passes add an unablated copy as a check
    assert cam.routes == ["cached"]


def test_the_pooled_route_substitutes_the_pool_output(small_cnn, images):
    # block2's output goes straight into an average pool. 16 channels, one of them all zero in each
    # image (not run, see the next test): 15 ablations + the unablated copy. After one batch of
    # copies of the layer output (6 copies of 16x4x4), the same batch is scored again from pooled
    # copies (16x1x1) and, as the scores agree, the rest runs on pooled copies, up to 6 * 16 per
    # pass, with an unablated copy added as a check.
    (prefix, pool_inputs, head), handles = record_batches(small_cnn.block1, small_cnn.pool, small_cnn.fc)
    try:
        cam = AblationCAM(small_cnn, [small_cnn.block2], batch_size=6)
        got = run_without_warnings(cam, images(2, size=8), [0, 1])
    finally:
        for handle in handles:
            handle.remove()
    assert cam.routes == ["pooled"]
    assert prefix == [2] + [0, 0, 0] + [0]
    # the copies once, the unablated and the ablated output pooled once per image (batch 2), then
    # only the empty batch
    assert pool_inputs == [2] + [6, 2, 0, 0] + [2, 0]
    assert head == [2] + [6, 6, 11] + [16]
    expected = reference_cam(small_cnn, [small_cnn.block2], images(2, size=8), [0, 1])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_channels_that_are_all_zero_are_not_run(small_cnn, images):
    with torch.no_grad():  # channels 0-4 of block2 become 0 everywhere after its ReLU
        small_cnn.block2[0].weight[:5] = 0.0
        small_cnn.block2[0].bias[:5] = -1.0
    x = images(2, size=8)
    acts = layer_output(small_cnn, small_cnn.block2, x)
    idle = (acts.flatten(2) == 0).all(2)
    assert idle[:, :5].all() and int(idle.sum()) == 12  # and one more channel per image
    (head,), handles = record_batches(small_cnn.fc)
    try:
        cam = AblationCAM(small_cnn, [small_cnn.block2], batch_size=64)
        targets = [ClassifierOutputTarget(0), ClassifierOutputTarget(3)]
        got = cam.get_cam_weights(x, small_cnn.block2, targets, acts, None)
    finally:
        handles[0].remove()
    # one pass per image (called without a capture, the image runs up to the layer and the hook
    # substitutes the copies): the unablated copy and 10 ablations, not 16
    assert head == [11, 11]
    expected = reference_weights(small_cnn, small_cnn.block2, x, [0, 3])  # every channel run
    assert torch.equal(got[idle], torch.zeros(12)) and torch.equal(expected[idle], torch.zeros(12))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_a_pooled_route_that_fails_later_goes_back_to_batch_size_copies(small_cnn, images, monkeypatch):
    calls = []
    pooled_forward = LayerRoutes._pooled_forward

    failed_at = []

    def failing_third_time(self, image, channels):
        calls.append(len(channels))
        if len(calls) == 3:
            failed_at.append(len(head))
            raise RuntimeError("the pool is gone")
        return pooled_forward(self, image, channels)

    monkeypatch.setattr(LayerRoutes, "_pooled_forward", failing_third_time)
    x = images(3, size=8)
    (head,), handles = record_batches(small_cnn.fc)
    try:
        cam = AblationCAM(small_cnn, [small_cnn.block2], batch_size=4)
        got = run_without_warnings(cam, x, [0, 1, 2])
    finally:
        handles[0].remove()
    assert cam.routes == ["cached"] and len(calls) == 3
    assert max(head[1 : failed_at[0]]) > 5  # a pooled pass held more than batch_size copies
    after = head[failed_at[0] :]
    assert after and max(after) <= 4 + 1  # then never more than batch_size copies and a check copy
    np.testing.assert_allclose(got, reference_cam(small_cnn, [small_cnn.block2], x, [0, 1, 2]), atol=1e-5)


class RunsOutOfMemory(nn.Module):
    """A head that fails as a device does when a batch is too large."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8 * 8 * 8, 3)
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        if a.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.head(a.flatten(1))


def test_out_of_memory_is_raised_not_retried(images):
    model = RunsOutOfMemory(limit=4).eval()
    before = model_snapshot(model)
    cam = AblationCAM(model, [model.features], batch_size=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the error itself comes out
        with pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory"):
            cam(images(1, size=8), [0])
    assert_same_model(before, model_snapshot(model))
    run_without_warnings(AblationCAM(model, [model.features], batch_size=3), images(1, size=8), [0])


class PoolHead(nn.Module):
    """conv (the target: negative values, so channels are ablated to min - 1e7) -> pool -> linear."""

    def __init__(self, pool: nn.Module, pooled: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Conv2d(3, 5, 3, padding=1)
        self.pool = pool
        self.head = nn.Linear(5 * pooled, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


@pytest.mark.parametrize(
    "pool, pooled",
    [
        (nn.AdaptiveMaxPool2d(1), 1),
        (nn.AvgPool2d(3, stride=2, padding=1), 16),  # the padding makes pooled ablated borders vary
        (nn.MaxPool2d(2), 16),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_pooled_route_with_other_pools_equals_the_definition(pool, pooled, batch_size, images):
    model = PoolHead(pool, pooled).eval()
    x = images(2, size=8)
    cam = AblationCAM(model, [model.features], batch_size=batch_size)
    got = run_without_warnings(cam, x, [0, 2])
    assert cam.routes == ["pooled"]
    weights = cam.get_cam_weights(
        x,
        model.features,
        [ClassifierOutputTarget(0), ClassifierOutputTarget(2)],
        layer_output(model, model.features, x),
        None,
    )
    expected_weights = reference_weights(model, model.features, x, [0, 2])
    torch.testing.assert_close(weights, expected_weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [0, 2]), atol=1e-5)


class PoolAndMore(nn.Module):
    """The layer's output reaches the output twice: through the pool and another way."""

    def __init__(self, other: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 3)
        self.other = other

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        pooled = self.pool(a).flatten(1)
        if self.other == "added":
            return self.head(torch.cat([pooled, pooled], 1)) + a.amax(dim=(1, 2, 3))[:, None]
        return self.head(torch.cat([pooled, a[:, :, 0, 0]], 1))


@pytest.mark.parametrize("other", ["added", "concatenated"])
def test_pooled_route_is_not_taken_where_the_layer_output_is_used_elsewhere(other, images):
    model = PoolAndMore(other).eval()
    x = images(2, size=8)
    cam = AblationCAM(model, [model.features], batch_size=2)
    got = run_without_warnings(cam, x, [0, 2])
    assert cam.routes == ["cached"]
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [0, 2]), atol=1e-5)


def test_pooled_route_is_not_taken_where_the_pool_is_larger(images):
    model = PoolHead(nn.AdaptiveAvgPool2d(5), 25).eval()  # VGG-like: 4x4 maps pooled to 5x5
    x = images(1, size=4)
    cam = AblationCAM(model, [model.features])
    got = run_without_warnings(cam, x, [1])
    assert cam.routes == ["cached"]
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [1]), atol=1e-5)


def test_resnet18_last_stage_takes_the_pooled_route(resnet18, images):
    layer = resnet18.layer4[-1]
    x = images(1, size=64)  # 2x2 maps (at 32x32 they are 1x1: pooling saves nothing, see above)
    cam = AblationCAM(resnet18, [layer], ratio_channels_to_ablate=0.25)
    acts = layer_output(resnet18, layer, x)
    got = cam.get_cam_weights(x, layer, [ClassifierOutputTarget(3)], acts, None)
    assert cam.routes == ["pooled"]
    # the scores y_k themselves, y * (1 - w_k), against the whole network run per ablated channel
    # (128 forwards): float32 sums in another order, so about 1e-6 of the logits' size
    with torch.no_grad():
        y = resnet18(x)[0, 3]
    strongest = acts[0].abs().flatten(1).mean(1).argsort(descending=True)[:128].tolist()
    expected = reference_weights(resnet18, layer, x, [3], only=set(strongest))
    torch.testing.assert_close(y * (1 - got), y * (1 - expected), rtol=0, atol=1e-5)
    assert (y * expected).abs().max() > 1e-3  # the ablations move the score


def test_pooled_route_needs_the_default_ablation_layer(small_cnn, images):
    class Halve(AblationLayer):
        def forward(self, output, channels, layout):
            copies = output.expand(int(channels.shape[0]), *output.shape[1:]).clone()
            for i, k in enumerate(channels.tolist()):
                if k >= 0:
                    copies[i, k] *= 0.5
            return copies

    x = images(1, size=8)
    cam = AblationCAM(small_cnn, [small_cnn.block2], ablation_layer=Halve())
    run_without_warnings(cam, x, [1])
    assert cam.routes == ["cached"]
    halve = lambda output, k, axis: output[:, k].mul_(0.5)  # noqa: E731
    expected = reference_weights(small_cnn, small_cnn.block2, x, [1], ablate=halve)
    got = cam.get_cam_weights(
        x, small_cnn.block2, [ClassifierOutputTarget(1)], layer_output(small_cnn, small_cnn.block2, x), None
    )
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_a_residual_keeps_the_prefix_at_batch_one(tiny_residual_net, images):
    model = tiny_residual_net  # the skip connection needs the block input: batch 1, not 0
    (stem, head), handles = record_batches(model.stem, model.fc)
    try:
        run_without_warnings(AblationCAM(model, [model.block_conv1], batch_size=3), images(2, size=8), [0, 1])
        assert stem == [2] + [0, 1, 1, 1] + [1, 1, 1]  # one empty-batch try, then batch 1
        assert head == [2] + [3, 3, 1] * 2
        stem.clear()
        run_without_warnings(
            AblationCAM(model, [model.block_conv1], batch_size=512), images(2, size=8), [0, 1]
        )
        assert stem == [2, 0, 1, 1]
    finally:
        for handle in handles:
            handle.remove()


class ScaledByInput(nn.Module):
    """The rest of the network uses a number computed from the whole input (NaN for an empty batch)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)) * x.abs().mean()


def test_the_unablated_check_catches_a_silently_different_output(images):
    model = ScaledByInput().eval()
    x = images(2, size=8)
    (seen,), handles = record_batches(model.features)
    try:
        got = run_without_warnings(AblationCAM(model, [model.features], batch_size=2), x, [0, 2])
    finally:
        handles[0].remove()
    assert seen == [2] + [0, 1, 1, 1] + [1, 1, 1]
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [0, 2]), atol=1e-5)


def test_passes_run_in_inference_mode_without_item(tiny_residual_net, images, monkeypatch):
    model = tiny_residual_net
    modes = []
    handle = model.register_forward_pre_hook(lambda m, a: modes.append(torch.is_inference_mode_enabled()))

    def no_item(self):
        raise AssertionError(".item() called")

    monkeypatch.setattr(torch.Tensor, "item", no_item)
    try:
        for layer in (model.stem, model.block_conv1):  # the empty-batch passes, and batch-1 passes
            modes.clear()
            AblationCAM(model, [layer], batch_size=3)(images(2, size=8), [1, 2])
            assert modes[0] is False and len(modes) > 2 and all(modes[1:])
    finally:
        handle.remove()


def test_get_cam_weights_after_a_call_ignores_its_capture(small_cnn, images):
    layer = small_cnn.block2
    x, other = images(1, size=16, seed=1), images(1, size=16, seed=2)
    cam = AblationCAM(small_cnn, [layer], batch_size=5)
    cam(x, [1])
    target = [ClassifierOutputTarget(1)]
    got = cam.get_cam_weights(other, layer, target, layer_output(small_cnn, layer, other), None)
    torch.testing.assert_close(got, reference_weights(small_cnn, layer, other, [1]), rtol=0, atol=1e-5)


def test_eigen_smooth_and_several_layers(small_cnn, images):
    x = images(2, size=16)
    layers = [small_cnn.block1, small_cnn.block2]
    got = AblationCAM(small_cnn, layers, batch_size=9)(x, [0, 2], eigen_smooth=True)
    np.testing.assert_allclose(got, reference_cam(small_cnn, layers, x, [0, 2], eigen_smooth=True), atol=1e-5)


def test_aug_smooth_is_the_mean_of_the_six_views(small_cnn, images):
    x = images(1, size=16)
    views = []
    for flip in (False, True):
        for factor in (1.0, 0.9, 1.1):
            view = x * factor
            view = view.flip(-1) if flip else view
            out = reference_cam(small_cnn, [small_cnn.block2], view, [3])
            views.append(out[..., ::-1] if flip else out)
    got = AblationCAM(small_cnn, [small_cnn.block2])(x, [3], aug_smooth=True)
    np.testing.assert_allclose(got, np.mean(views, axis=0), atol=1e-5)


def test_3d_input(small_cnn3d):
    x = torch.randn(1, 3, 6, 8, 8, generator=torch.Generator().manual_seed(2))
    got = AblationCAM(small_cnn3d, [small_cnn3d.block2], batch_size=5)(x, [2])
    assert got.shape == (1, 6, 8, 8)
    np.testing.assert_allclose(got, reference_cam(small_cnn3d, [small_cnn3d.block2], x, [2]), atol=1e-5)


def test_ratio_channels_to_ablate(small_cnn, images):
    x = images(1, size=16)
    layer = small_cnn.block2
    acts = layer_output(small_cnn, layer, x)
    target = [ClassifierOutputTarget(2)]
    full = AblationCAM(small_cnn, [layer]).get_cam_weights(x, layer, target, acts, None)
    half = AblationCAM(small_cnn, [layer], ratio_channels_to_ablate=0.5).get_cam_weights(
        x, layer, target, acts, None
    )
    strongest = acts[0].abs().mean((1, 2)).argsort(descending=True)[:8]
    mask = torch.zeros(16, dtype=torch.bool)
    mask[strongest] = True
    torch.testing.assert_close(half[0, mask], full[0, mask], rtol=1e-5, atol=1e-7)
    assert torch.equal(half[0, ~mask], torch.zeros(8))


# -- the fallback -----------------------------------------------------------------------------------


class BatchFromInput(nn.Module):
    """Reshapes by the input's batch size after the target layer: a batch of copies breaks it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).reshape(x.shape[0], -1))


class KeepsInputBatch(BatchFromInput):
    """Runs on a batch of copies but returns only as many rows as its input had."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))[: x.shape[0]]


class CropsByInputSize(BatchFromInput):
    """Also crops the layer output by the input's size: only the input itself gives the right crop."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = self.features(x)[:, :, : x.shape[-2] // 2, : x.shape[-1] // 2]
        return self.head(kept.reshape(x.shape[0], -1))


@pytest.mark.parametrize("model_cls", [BatchFromInput, KeepsInputBatch])
def test_small_route_for_models_that_reshape_by_the_input_batch(model_cls, images):
    # neither an empty batch nor batch 1 gives a row per copy; an input of one small zero image
    # per copy does, and the hook puts the kept layer output back in every row
    model = model_cls().eval()
    x = images(2, size=32)
    (seen,), handles = record_batches(model.features)
    shapes = []
    handles.append(
        model.features.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape[2:])))
    )
    try:
        cam = AblationCAM(model, [model.features], batch_size=3)
        model.head = nn.Linear(4 * 32 * 32, 3)  # the head of 32x32 inputs
        got = run_without_warnings(cam, x, [0, 2])
    finally:
        for handle in handles:
            handle.remove()
    assert cam.routes == ["small"]
    # per image: the empty batch and batch 1 fail, then the unablated copy and 4 channels, 3 per
    # pass (1 check copy added to the second) on 2x2 inputs (32 / 16); the second image starts on
    # the small route
    assert seen == [2] + [0, 1, 3, 3] + [3, 3]
    assert shapes == [(32, 32)] + [(32, 32), (32, 32), (2, 2), (2, 2)] + [(2, 2)] * 2
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [0, 2]), atol=1e-5)


class NeedsThreePixels(BatchFromInput):
    """A valid 3x3 convolution: inputs under 3x3 fail."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.head = nn.Linear(4 * 30 * 30, 3)


def test_small_route_tries_larger_inputs(images):
    model = NeedsThreePixels().eval()
    x = images(1, size=32)
    shapes = []
    handle = model.features.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        cam = AblationCAM(model, [model.features], batch_size=3)
        got = run_without_warnings(cam, x, [1])
    finally:
        handle.remove()
    assert cam.routes == ["small"]
    # the capture, the empty batch, batch 1, then 32 / 16 = 2 pixels fails and 32 / 8 = 4 works
    # (the unablated copy and 2 channels), and the next pass (2 channels + a check copy) starts there
    assert shapes == [
        (1, 3, 32, 32),
        (0, 3, 32, 32),
        (1, 3, 32, 32),
        (3, 3, 2, 2),
        (3, 3, 4, 4),
        (3, 3, 4, 4),
    ]
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [1]), atol=1e-5)


def test_small_route_without_a_capture(images):
    # called directly, the first pass has no known score to check a small pass against: it runs
    # the whole network on repeats of the image, and the next pass takes the small route
    model = BatchFromInput().eval()
    model.head = nn.Linear(4 * 32 * 32, 3)
    x = images(1, size=32)
    acts = layer_output(model, model.features, x)
    shapes = []
    handle = model.features.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        cam = AblationCAM(model, [model.features], batch_size=3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = cam.get_cam_weights(x, model.features, [ClassifierOutputTarget(2)], acts, None)
    finally:
        handle.remove()
    assert cam.routes == ["small"] and cam.used_fallback is False
    assert shapes == [(1, 3, 32, 32), (3, 3, 32, 32), (3, 3, 2, 2)]
    torch.testing.assert_close(got, reference_weights(model, model.features, x, [2]), rtol=1e-4, atol=1e-5)


def test_fallback_is_taken_and_correct(images):
    model = CropsByInputSize().eval()
    x = images(2, size=8)
    before = model_snapshot(model)
    cam = AblationCAM(model, [model.features], batch_size=3)
    with pytest.warns(UserWarning, match="does not run on a batch of ablated copies") as caught:
        got = cam(x, [0, 2])
    assert {w.filename for w in caught if "ablated copies" in str(w.message)} == {__file__}  # the caller's
    assert cam.used_fallback is True and cam.routes == ["full"]
    np.testing.assert_allclose(got, reference_cam(model, [model.features], x, [0, 2]), atol=1e-5)
    assert_same_model(before, model_snapshot(model))
    # one copy per pass needs no batch: the fast path works and gives the same maps
    single = AblationCAM(model, [model.features], batch_size=1)
    np.testing.assert_allclose(run_without_warnings(single, x, [0, 2]), got, atol=1e-5)
    # the flag is per call
    run_without_warnings(single, x[:1], [0])
    with pytest.warns(UserWarning):
        cam(x[:1], [0])
    assert cam.used_fallback is True


# -- layouts ----------------------------------------------------------------------------------------


class Pyramid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fine = nn.Conv2d(3, 2, 3, padding=1)
        self.coarse = nn.Conv2d(3, 3, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return OrderedDict([("0", self.fine(x)), ("pool", self.coarse(x))])


class PyramidNet(nn.Module):
    """A detector-like model whose target layer outputs a dict of feature maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fpn = Pyramid()
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.fpn(x)
        return self.head(torch.cat([levels["0"].mean((2, 3)), levels["pool"].mean((2, 3))], dim=1))


def pyramid_transform(levels):
    size = levels["pool"].shape[-2:]
    return torch.cat([F.interpolate(levels["0"], size=size), levels["pool"]], dim=1)


def test_feature_pyramid_with_ablation_layer_faster_rcnn(images):
    model = PyramidNet().eval()
    x = images(2, size=8)
    cam = AblationCAM(
        model, [model.fpn], reshape_transform=pyramid_transform, ablation_layer=AblationLayerFasterRCNN()
    )
    acts = pyramid_transform(layer_output(model, model.fpn, x))
    got = cam.get_cam_weights(x, model.fpn, [ClassifierOutputTarget(1)] * 2, acts, None)
    expected = []
    for b in range(2):
        with torch.no_grad():
            y = model(x[b : b + 1])[0, 1]
        row = []
        for level, width in (("0", 2), ("pool", 3)):
            for k in range(width):

                def hook(module, inputs, output, level=level, k=k):
                    output = OrderedDict((key, value.clone()) for key, value in output.items())
                    output[level][:, k] = -1000.0
                    return output

                handle = model.fpn.register_forward_hook(hook)
                try:
                    with torch.no_grad():
                        row.append((y - model(x[b : b + 1])[0, 1]) / y)
                finally:
                    handle.remove()
        expected.append(torch.stack(row))
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-6)
    assert cam(x, [1, 1]).shape == (2, 8, 8)
    with pytest.raises(ValueError, match="AblationLayer ablates tensor outputs"):
        AblationCAM(model, [model.fpn], reshape_transform=pyramid_transform)(x, [1, 1])


def test_layout_mismatch_and_arithmetic_transforms_are_clear_errors(small_cnn, images):
    x = images(1, size=16)
    with pytest.raises(ValueError, match="finds 8 channels .* have 16"):
        AblationCAM(small_cnn, [small_cnn.block2], ablation_layer=AblationLayerVit())(x, [0])

    def scaled(t):
        return F.interpolate(t.float(), scale_factor=2.0, mode="bilinear")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the error is raised as it is
        with pytest.raises(ValueError, match="only select, reshape and permute"):
            AblationCAM(small_cnn, [small_cnn.block2], reshape_transform=scaled)(x, [0])


# -- API forms --------------------------------------------------------------------------------------


def test_api_generations(tiny_vit, small_cnn, images):
    layer = tiny_vit.blocks[-1].norm1
    vit_layer = AblationLayerVit()
    legacy = AblationCAM(tiny_vit, [layer], vit_transform, vit_layer, 7, 0.5)  # the 1.5.x order
    assert legacy.reshape_transform is vit_transform and legacy.ablation_layer is vit_layer
    assert legacy.batch_size == 7 and legacy.ratio_channels_to_ablate == 0.5
    keywords = AblationCAM(
        tiny_vit,
        target_layers=[layer],
        reshape_transform=vit_transform,
        ablation_layer=AblationLayerVit(),
        batch_size=7,
        ratio_channels_to_ablate=0.5,
    )
    x = images(1, size=16)
    np.testing.assert_array_equal(legacy(x, [1]), keywords(x, [1]))

    x = images(1, size=16)
    expected = AblationCAM(small_cnn, [small_cnn.block2], batch_size=5)(x, [1])
    seed = AblationCAM(model=small_cnn, target_layer=small_cnn.block2, use_cuda=False)
    seed.batch_size = 5  # the original API's attribute
    np.testing.assert_allclose(seed(input_tensor=x, target_category=1), expected, atol=1e-6)
    assert isinstance(seed.ablation_layer, AblationLayer)


def test_progress_bar(small_cnn, images, capsys):
    x = images(1, size=16)
    AblationCAM(small_cnn, [small_cnn.block2], progress=True)(x, [0])
    assert "AblationCAM" in capsys.readouterr().err
    AblationCAM(small_cnn, [small_cnn.block2], progress=False)(x, [0])
    AblationCAM(small_cnn, [small_cnn.block2])(x, [0])  # default: stderr is not a terminal here
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# -- the user's model and bad arguments --------------------------------------------------------------


def test_model_untouched_after_success_and_exception(used_model, images):
    before = model_snapshot(used_model)
    cam = AblationCAM(used_model, [used_model.block1, used_model.block2], batch_size=5)
    out = cam(images(2, size=16), [0, 1], aug_smooth=True, eigen_smooth=True)
    assert np.isfinite(out).all() and out.max() > 0.5
    assert_same_model(before, model_snapshot(used_model))

    calls = []

    def failing_target(output):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return output[0]

    with pytest.raises(RuntimeError, match="boom"):
        cam(images(1, size=16), [failing_target])
    assert_same_model(before, model_snapshot(used_model))
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_model_untouched_when_the_fallback_fails_too(images):
    model = CropsByInputSize().eval()
    before = model_snapshot(model)

    calls = []

    def failing_target(output):
        calls.append(1)
        if len(calls) > 1:  # the unablated score is fine, the ablated ones fail
            raise RuntimeError("target failed")
        return output[0]

    with pytest.warns(UserWarning, match="does not run on a batch"), pytest.raises(
        RuntimeError, match="target"
    ):
        AblationCAM(model, [model.features], batch_size=4)(images(1, size=8), [failing_target])
    assert_same_model(before, model_snapshot(model))


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_batch_size(small_cnn, value, error):
    with pytest.raises(error, match="batch_size"):
        AblationCAM(small_cnn, [small_cnn.block2], batch_size=value)
    cam = AblationCAM(small_cnn, [small_cnn.block2])
    with pytest.raises(error, match="batch_size"):
        cam.batch_size = value
    assert cam.batch_size is None  # the default: as many per pass as the input has images


@pytest.mark.parametrize(
    "value, error", [(0.0, ValueError), (1.01, ValueError), (float("nan"), ValueError), ("0.5", TypeError)]
)
def test_bad_ratio(small_cnn, value, error):
    with pytest.raises(error, match="ratio_channels_to_ablate"):
        AblationCAM(small_cnn, [small_cnn.block2], ratio_channels_to_ablate=value)
    cam = AblationCAM(small_cnn, [small_cnn.block2])
    with pytest.raises(error, match="ratio_channels_to_ablate"):
        cam.ratio_channels_to_ablate = value


def test_bad_ablation_layer(small_cnn):
    with pytest.raises(TypeError, match="ablation_layer given twice"):
        AblationCAM(small_cnn, [small_cnn.block2], None, AblationLayer(), ablation_layer=AblationLayer())
    with pytest.raises(TypeError, match="ablation_layer must be an AblationLayer"):
        AblationCAM(small_cnn, [small_cnn.block2], ablation_layer=nn.Identity())
