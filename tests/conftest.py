"""Shared fixtures: tiny fixed-weight models for golden values, small seeded real architectures."""

from __future__ import annotations

import contextlib
import functools

import PIL.Image
import pytest
import torch
from torch import nn

from pytorch_grad_cam import layer_search
from pytorch_grad_cam._core.outputs import map_tensors
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.registry import METHODS

_PILLOW_OPEN = PIL.Image.open


@pytest.fixture(autouse=True)
def _pillow_open_as_pillow_defines_it():
    """ultralytics, once a test imports it, replaces ``PIL.Image.open`` by one that tries to pip-install
    pi-heif when a file is not an image (offline here: an error logged to a stale stream): every test
    ends with Pillow's own, so the tests after it see what a user without ultralytics sees."""
    yield
    PIL.Image.open = _PILLOW_OPEN


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test starts and ends with an empty layer-search cache (no choice carried between tests)."""
    layer_search.clear_cache()
    yield
    layer_search.clear_cache()


#: The registered methods that explain a layer's activations: every one but the attention methods
#: (LeGrad, the rollouts, AttentionGradCAM), which read a transformer's attention and refuse other
#: models; the tests of those are tests/test_attention_*.py.
LAYER_METHODS = sorted(name for name, info in METHODS.items() if not issubclass(info.cls, AttentionCAM))


class LinearHeadNet(nn.Module):
    """``features`` (a 1x1 conv, one output channel per entry of ``channel_scales``) -> flatten -> linear.

    With input ``x`` of shape ``(B, 1, H, W)`` the target layer ``features`` outputs
    ``A_c = channel_scales[c] * x`` and the gradient of logit ``k`` with respect to ``A`` is
    ``head[k]`` reshaped to ``(C, H, W)``, whatever ``x`` is: both can be written down by hand.
    """

    def __init__(self, channel_scales: list[float], head: torch.Tensor) -> None:
        super().__init__()
        channels = len(channel_scales)
        self.features = nn.Conv2d(1, channels, kernel_size=1, bias=False)
        self.head = nn.Linear(head.shape[1], head.shape[0], bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor(channel_scales).view(channels, 1, 1, 1))
            self.head.weight.copy_(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture
def linear_head_net():
    """Factory: ``linear_head_net(channel_scales, head)`` -> a :class:`LinearHeadNet` in eval mode."""

    def make(channel_scales: list[float], head: list[list[float]]) -> LinearHeadNet:
        return LinearHeadNet(channel_scales, torch.tensor(head, dtype=torch.float32)).eval()

    return make


class MixingHeadNet(nn.Module):
    """``features`` (a 1x1 convolution, no bias) -> flatten -> ``head`` (linear, no bias).

    With ``mixing`` the identity, the target layer ``features`` outputs the input itself, ``A = x``,
    and the gradient of logit ``k`` with respect to ``A`` is ``head[k]`` reshaped to ``A``'s
    per-sample shape, whatever ``x`` is: both can be written down by hand.

    With ``quadratic`` (``V``, shaped like ``head``) the logits become
    ``y_k = <head_k, a> + <V_k, a>^2 / 2`` for the flattened activations ``a``: the gradient is
    ``head_k + <V_k, a> V_k`` and the Hessian-vector product ``H_k a = <V_k, a> V_k``.
    """

    def __init__(
        self, mixing: torch.Tensor, head: torch.Tensor, dims: int = 2, quadratic: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        out_channels, in_channels = mixing.shape
        self.features = conv(in_channels, out_channels, kernel_size=1, bias=False)
        self.head = nn.Linear(head.shape[1], head.shape[0], bias=False)
        self.quadratic = None if quadratic is None else nn.Linear(head.shape[1], head.shape[0], bias=False)
        with torch.no_grad():
            self.features.weight.copy_(mixing.view(out_channels, in_channels, *([1] * dims)))
            self.head.weight.copy_(head)
            if quadratic is not None:
                self.quadratic.weight.copy_(quadratic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x).flatten(1)
        if self.quadratic is None:
            return self.head(a)
        return self.head(a) + 0.5 * self.quadratic(a) ** 2


@pytest.fixture
def mixing_head_net():
    """Factory: ``mixing_head_net(head, mixing=None, dims=2, quadratic=None)`` -> a :class:`MixingHeadNet`.

    ``head`` is ``(num_classes, C * positions)``; ``mixing`` (default: the 2x2 identity) is
    ``(C, C_in)``; ``quadratic`` is shaped like ``head``. The model is in eval mode.
    """

    def make(
        head: list[list[float]],
        mixing: list[list[float]] | None = None,
        dims: int = 2,
        quadratic: list[list[float]] | None = None,
    ) -> MixingHeadNet:
        head_t = torch.tensor(head, dtype=torch.float32)
        mixing_t = torch.eye(2) if mixing is None else torch.tensor(mixing, dtype=torch.float32)
        quadratic_t = None if quadratic is None else torch.tensor(quadratic, dtype=torch.float32)
        return MixingHeadNet(mixing_t, head_t, dims=dims, quadratic=quadratic_t).eval()

    return make


#: The hand-worked case of the golden tests: two channels on a 2x2 grid,
#: ``A_0 = [[1, 2], [3, 4]]`` and ``A_1 = [[0, -1], [2, 0]]``.
GOLDEN_X = [[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [2.0, 0.0]]]
#: Class 0: ``G_0 = [[1, 0], [0, 1]]``, ``G_1 = [[2, 0], [-1, 0]]``, logit 5 - 2 = 3.
#: Class 1: ``G_0 = [[0, 1], [1, 0]]``, ``G_1 = [[0, 0], [0, 1]]``, logit 5 + 0 = 5 (the top class).
GOLDEN_HEAD = [[1.0, 0.0, 0.0, 1.0, 2.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]]


@pytest.fixture
def golden(mixing_head_net):
    """``(model, x)``: the hand-worked case, with its target layer ``model.features``."""
    return mixing_head_net(GOLDEN_HEAD), torch.tensor([GOLDEN_X])


#: A head where the class chosen changes the map (on ``golden`` both classes give the same GradCAM
#: weights). Class 0 reads ``A_0`` at (0, 0) only: ``G_0 = [[1, 0], [0, 0]]``, ``G_1 = 0``; class 1
#: reads ``A_1`` at (1, 0) only: ``G_0 = 0``, ``G_1 = [[0, 0], [1, 0]]``. On ``GOLDEN_X`` the logits
#: are 1 and 2 (class 1 on top); on ``GOLDEN_X`` flipped left-right they are 2 and 0 (class 0 on top).
CLASS_CHOICE_HEAD = [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]]


@pytest.fixture
def class_choice(mixing_head_net):
    """``(model, x)``: ``GOLDEN_X`` with :data:`CLASS_CHOICE_HEAD`, where the top class of the image
    (1) and of its flipped view (0) differ, and so do their maps; target layer ``model.features``."""
    return mixing_head_net(CLASS_CHOICE_HEAD), torch.tensor([GOLDEN_X])


class SmallConvNet(nn.Module):
    """conv-bn-relu(inplace) x2 -> avgpool -> linear; random weights from a fixed seed."""

    def __init__(self, dims: int = 2, num_classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.block1 = nn.Sequential(conv(3, 8, 3, padding=1), norm(8), nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(conv(8, 16, 3, stride=2, padding=1), norm(16), nn.ReLU(inplace=True))
        self.pool = pool
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block2(self.block1(x))).flatten(1))


@pytest.fixture
def small_cnn() -> SmallConvNet:
    return SmallConvNet().eval()


@pytest.fixture
def small_cnn3d() -> SmallConvNet:
    return SmallConvNet(dims=3).eval()


@pytest.fixture(scope="session")
def resnet18():
    """torchvision resnet18 with seeded random weights (no download)."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture
def images():
    """Factory: ``images(batch, size=32, channels=3, seed=0)`` -> a seeded normal batch."""

    def make(batch: int, size: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch, channels, size, size, generator=generator)

    return make


class TinyResidualNet(nn.Module):
    """stem (conv-relu) -> one residual block (conv-bn-relu-conv-bn, += identity, relu) -> mean -> linear.

    ``block_conv1`` sits inside the residual block: its output has negative values and the block's
    input reaches the sum through the skip connection. Random weights from a fixed seed.
    """

    def __init__(self, channels: int = 6, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.block_conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.block_bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.block_conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.block_bn2 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        identity = x
        out = self.relu(self.block_bn1(self.block_conv1(x)))
        out = self.block_bn2(self.block_conv2(out))
        out += identity
        return self.fc(self.relu(out).mean(dim=(2, 3)))


@pytest.fixture
def tiny_residual_net() -> TinyResidualNet:
    return TinyResidualNet().eval()


@pytest.fixture
def tiny_vit():
    """A seeded 2-block timm ViT for 16x16 inputs: 4x4 patches of 4 pixels, 8 channels, 4 classes.

    Its token output is ``(B, 1 + 16, 8)``; use ``vit_reshape_transform(t, 4, 4)``.
    """
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2, num_classes=4
    ).eval()


class FrameNet(nn.Module):
    """Takes a clip ``(B, 3, T, H, W)``: space halved twice, time never; channel 0 is the red of each
    pixel of each frame; class 0 reads channel 0's mean, class 1 channel 1's (green)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, 2, (1, 2, 2), stride=(1, 2, 2)), nn.ReLU())
        self.pool = nn.AvgPool3d((1, 2, 2))
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[0, 0] = 0.25
            self.features[0].weight[1, 1] = 0.25
            self.features[0].bias.zero_()
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).mean(dim=(2, 3, 4)))


class RegionNet(nn.Module):
    """flatten -> linear (no bias): logit 0 is the sum of the input over a fixed pixel region (every
    channel), logit 1 is 0. The score of any perturbed input can be written down by hand."""

    def __init__(self, region: torch.Tensor, channels: int) -> None:
        super().__init__()
        height, width = region.shape
        self.head = nn.Linear(channels * height * width, 2, bias=False)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0] = region.float().expand(channels, height, width).reshape(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


@pytest.fixture
def region_net():
    """Factory: ``region_net(region, channels=1)`` -> a :class:`RegionNet` in eval mode; ``region``
    is an ``(H, W)`` 0/1 tensor."""

    def make(region: torch.Tensor, channels: int = 1) -> RegionNet:
        return RegionNet(torch.as_tensor(region), channels).eval()

    return make


class DuplicateChannels(nn.Module):
    """Channels 0, 1 and 3 identical, 4 and 5 all zero after the ReLU: 3 distinct masks per image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6 * 8 * 8, 3)
        conv = self.features[0]
        with torch.no_grad():
            conv.weight[1] = conv.weight[0]
            conv.weight[3] = conv.weight[0]
            conv.bias[1] = conv.bias[0]
            conv.bias[3] = conv.bias[0]
            conv.bias[2] = 5.0  # never all zero
            conv.weight[4:] = 0.0
            conv.bias[4:] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture
def count_numpy_conversions(monkeypatch):
    """Factory of a context manager counting ``Tensor.numpy`` and ``torch.from_numpy`` calls made
    inside it: ``with count_numpy_conversions() as counts: ...`` then
    ``counts == {"numpy": n, "from_numpy": m}``."""
    to_numpy, from_numpy = torch.Tensor.numpy, torch.from_numpy

    @contextlib.contextmanager
    def counting():
        counts = {"numpy": 0, "from_numpy": 0}

        def counted_numpy(self, *args, **kwargs):
            counts["numpy"] += 1
            return to_numpy(self, *args, **kwargs)

        def counted_from_numpy(array):
            counts["from_numpy"] += 1
            return from_numpy(array)

        with monkeypatch.context() as patch:
            patch.setattr(torch.Tensor, "numpy", counted_numpy)
            patch.setattr(torch, "from_numpy", counted_from_numpy)
            yield counts

    return counting


# -- the user's model is left exactly as it was ----------------------------------------------------


def model_snapshot(model: nn.Module) -> dict:
    return {
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grads": [(name, None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()],
        "grad_ids": [id(p.grad) for p in model.parameters()],
        "hooks": [
            (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for name, m in model.named_modules()
        ],
        "modules": [(name, id(m)) for name, m in model.named_modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def layer_output(model, layer, x, transform=None):
    """The output of ``layer`` in a no-grad forward of ``x`` (detached copies of its tensors),
    optionally transformed."""
    captured = {}
    copy = functools.partial(map_tensors, lambda t: t.detach().clone())
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("a", copy(o)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured["a"] if transform is None else transform(captured["a"])


def assert_same_model(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["grad_ids"] == after["grad_ids"]
    for (name, g0), (_, g1) in zip(before["grads"], after["grads"]):
        assert (g0 is None) == (g1 is None), name
        if g0 is not None:
            torch.testing.assert_close(g0, g1, rtol=0, atol=0)
    assert before["hooks"] == after["hooks"]
    assert before["modules"] == after["modules"]
    for key, value in before["state"].items():
        torch.testing.assert_close(value, after["state"][key], rtol=0, atol=0)


@pytest.fixture
def used_model(small_cnn, images):
    """A model in a user's mixed state: train mode with one eval submodule, one frozen layer,
    existing .grad on some parameters, and a hook of the user's own."""
    model = small_cnn.train()
    model.block1[1].eval()
    model.block1[0].weight.requires_grad_(False)
    model.fc(torch.randn(2, 16)).sum().backward()
    model.fc.register_forward_hook(lambda m, i, o: None)
    return model


# -- the batch runner's tests (tests/test_batch_*.py; helpers in tests/batch_helpers.py) ----------------


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of 40 small image files: good ones, odd colour modes, and bad files."""
    import batch_helpers

    return batch_helpers.make_photo_dir(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def single_run(photos, tmp_path_factory):
    """The reference run: ``cam.py --image-dir`` in one process (one DataLoader worker) on ``photos``.

    Returns:
        ``(output folder, the finished process)``.
    """
    import batch_helpers

    output = tmp_path_factory.mktemp("single") / "cams"
    result = batch_helpers.run_cli([*batch_helpers.command(photos, output), "--num-workers", "1"])
    assert result.returncode == 0, result.stderr
    return output, result


# -- a vision transformer whose attention is set by hand (tests of the attention methods) ------------


class HandAttentionBlock(nn.Module):
    """``t + mean_heads(P_h @ t)`` through ``F.scaled_dot_product_attention`` with the probabilities
    ``P`` fixed by hand: the queries are 0 and the logits are ``log P`` given as the attention mask."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", torch.log(probs))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        heads = self.logits.shape[0]
        values = tokens.unsqueeze(1).expand(-1, heads, -1, -1)
        query = torch.zeros_like(values)
        out = torch.nn.functional.scaled_dot_product_attention(query, query, values, attn_mask=self.logits)
        return tokens + out.mean(dim=1)


class HandViT(nn.Module):
    """1-pixel patches of a ``(B, 1, 2, 2)`` image as 4 tokens of width 1 after a class token of value 1;
    two :class:`HandAttentionBlock` of 2 heads; logits ``(t_cls, -t_cls)``.

    Block 1: head 0 uniform (1/5), head 1 the identity. Block 2: every query attends token 1 (head 0)
    or token 4 (head 1). The tests work out every method's numbers from these by hand.
    """

    def __init__(self) -> None:
        super().__init__()
        uniform = torch.full((5, 5), 0.2)
        first = torch.zeros(5, 5)
        first[:, 1] = 1.0
        last = torch.zeros(5, 5)
        last[:, 4] = 1.0
        self.cls_token = nn.Parameter(torch.ones(1, 1, 1))
        self.blocks = nn.Sequential(
            HandAttentionBlock(torch.stack([uniform, torch.eye(5)])),
            HandAttentionBlock(torch.stack([first, last])),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls_token.expand(x.shape[0], 1, 1), x.flatten(2).transpose(1, 2)], dim=1)
        tokens = self.blocks(tokens)
        return torch.cat([tokens[:, 0], -tokens[:, 0]], dim=1)


@pytest.fixture
def hand_vit() -> HandViT:
    return HandViT().eval()


#: The browser the page tests drive: Debian's ``chromium`` (``.ci/run`` installs it).
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through playwright. A missing browser or library fails the tests that need
    it (they are not skipped): ``apt-get install chromium`` and ``pip install -e ".[test]"``."""
    import os

    from playwright.sync_api import sync_playwright

    path = os.environ.get("CHROMIUM", CHROMIUM)
    assert os.path.exists(path), f"no Chromium at {path}: apt-get install chromium (or set CHROMIUM)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
