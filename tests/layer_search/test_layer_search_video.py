"""Video: (B, C, T, H, W) inputs whose time axis is downsampled differently from space (issue 20,
item 3; docs/layer-rule.md): the map keeps time, channels-last 5-D outputs (Swin3D) read as such,
tokens read as ``t x h x w`` grids (MViT)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FrameNet
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.layer_search.layouts import volume_misfit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class _Block(nn.Module):
    """Passes tokens on (a copy), with the grid they came with when ``carry_grid`` (as MViT's blocks)."""

    def __init__(self, carry_grid: bool) -> None:
        super().__init__()
        self.carry_grid = carry_grid

    def forward(self, tokens, thw):
        out = tokens * 1.0
        return (out, thw) if self.carry_grid else out


class TubeletNet(nn.Module):
    """A class token and one token per tubelet of ``tubelet`` pixels (frames x rows x columns),
    ``(B, 1 + t*h*w, 2)``: a token's channel 0 is its tubelet's mean red, channel 1 its mean green;
    class k reads channel k's mean over the patch tokens. The tubelets come from a ``Conv3d``
    module (``embed_module``) or from a convolution in ``forward`` (no module records their grid)."""

    def __init__(self, tubelet, *, embed_module: bool, carry_grid: bool) -> None:
        super().__init__()
        weight = torch.zeros(2, 3, *tubelet)
        weight[0, 0] = weight[1, 1] = 1.0 / math.prod(tubelet)
        self.tubelet = tuple(tubelet)
        self.embed = nn.Conv3d(3, 2, tubelet, stride=tubelet, bias=False) if embed_module else None
        if self.embed is not None:
            with torch.no_grad():
                self.embed.weight.copy_(weight)
        self.register_buffer("weight", weight)
        self.cls = nn.Parameter(torch.zeros(1, 1, 2))
        self.block = _Block(carry_grid)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x):
        maps = self.embed(x) if self.embed is not None else F.conv3d(x, self.weight, stride=self.tubelet)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), maps.flatten(2).transpose(1, 2)], dim=1)
        out = self.block(tokens, tuple(maps.shape[2:]))
        tokens = out[0] if isinstance(out, tuple) else out
        return self.fc(tokens[:, 1:].mean(dim=1))


def test_token_video_model_lights_the_frame_with_the_evidence():
    """1x4x4 tubelets on a (6, 16, 16) clip: 1 + 6*4*4 tokens, no other split; red only in frame 3."""
    x = torch.zeros(1, 3, 6, 16, 16)
    x[:, 1] = 0.5
    x[:, 0, 3, 4:12, 4:12] = 1.0
    model = TubeletNet((1, 4, 4), embed_module=True, carry_grid=False).eval()
    choice = find_target_layer(model, x)
    assert (choice.name, choice.layout.describe()) == ("block", "tokens (1 prefix + 6x4x4)")
    maps = GradCAM(model)(x, targets=[ClassifierOutputTarget(0)])
    assert maps.shape == (1, 6, 16, 16)
    per_frame = maps[0].sum(axis=(1, 2))
    assert per_frame[3] > 0 and float(per_frame.sum() - per_frame[3]) == 0.0


#: Red in the tubelet of frames 0-3, rows 4-7, columns 8-11 of a (8, 16, 16) clip cut into 4x4x4
#: tubelets: token grid 2x4x4, map cell (0, 1, 2). Trilinear resizing of 2 frames to 8 (half-pixel
#: centres) weighs frame 0's cell by 1, 1, 7/8, 5/8, 3/8, 1/8, 0, 0 over the 8 frames.
TUBELET_FRAMES = np.array([1, 1, 7 / 8, 5 / 8, 3 / 8, 1 / 8, 0, 0])


def _tubelet_clip() -> torch.Tensor:
    x = torch.zeros(1, 3, 8, 16, 16)
    x[:, 1] = 0.5
    x[:, 0, 0:4, 4:8, 8:12] = 1.0
    return x


@pytest.mark.parametrize(
    ("embed_module", "carry_grid", "layer"),
    [(False, True, "block"), (True, False, "block")],
    ids=["grid returned with the tokens", "grid of the patch embedding"],
)
def test_tokens_that_split_two_ways_take_the_grid_they_came_with(embed_module, carry_grid, layer):
    """32 tokens on (8, 16, 16) read as 2x4x4 or 8x2x2 alike; the block's returned grid, or the
    patch embedding's map the tokens came from, says 2x4x4 (8x2x2 would light frame 1 alone)."""
    x = _tubelet_clip()
    model = TubeletNet((4, 4, 4), embed_module=embed_module, carry_grid=carry_grid).eval()
    choice = find_target_layer(model, x)
    assert (choice.name, choice.grid, choice.layout.prefix) == (layer, (2, 4, 4), 1)
    maps = GradCAM(model)(x, targets=[ClassifierOutputTarget(0)])
    per_frame = maps[0].sum(axis=(1, 2))
    np.testing.assert_allclose(per_frame / per_frame[0], TUBELET_FRAMES, atol=1e-6)
    assert np.unravel_index(maps[0, 0].argmax(), (16, 16))[1] in range(8, 12)


def test_tokens_that_split_two_ways_with_nothing_to_settle_them():
    model = TubeletNet((4, 4, 4), embed_module=False, carry_grid=False).eval()
    with pytest.raises(ValueError, match=r"block .*1 prefix \+ 2x4x4 or 8x2x2 \(frames x rows x columns\)"):
        find_target_layer(model, _tubelet_clip())


def test_volume_misfit_lets_time_have_its_own_stride():
    assert volume_misfit((8, 4, 4), (8, 16, 16)) == 0.0  # time not downsampled, space by 4
    assert volume_misfit((1, 2, 2), (8, 64, 64)) == 0.0  # time reduced to one frame
    assert volume_misfit((4, 1, 2), (8, 64, 64)) is None  # under 2 cells along a spatial axis
    assert volume_misfit((9, 4, 4), (8, 16, 16)) is None  # more frames than the input


def test_only_the_frame_with_the_evidence_lights_up():
    x = torch.zeros(1, 3, 6, 16, 16)
    x[:, 1] = 0.5  # green everywhere
    x[:, 0, 3, 4:12, 4:12] = 1.0  # red only in frame 3
    model = FrameNet().eval()
    choice = find_target_layer(model, x)
    assert choice.name == "pool" and choice.grid == (6, 4, 4)
    maps = GradCAM(model)(x, targets=[ClassifierOutputTarget(0)])
    assert maps.shape == (1, 6, 16, 16)
    per_frame = maps[0].sum(axis=(1, 2))
    assert per_frame[3] > 0 and float(per_frame.sum() - per_frame[3]) == 0.0


def _small_mvit_v2_s(frames: int, size: int) -> nn.Module:
    """MViT-v2-S's design (pooled attention with relative positions and residual pooling, a class
    token, stages that halve space and keep time) in three small blocks: torchvision's ``mvit_v2_s``
    takes only 16x224x224 clips (its ``spatial_size`` is fixed), too slow for a unit test."""
    from torchvision.models.video import MViT
    from torchvision.models.video.mvit import MSBlockConfig

    def block(heads, channels_in, channels_out, stride_q, stride_kv):
        return MSBlockConfig(heads, channels_in, channels_out, [3, 3, 3], [3, 3, 3], stride_q, stride_kv)

    blocks = [
        block(1, 16, 16, [1, 1, 1], [1, 2, 2]),
        block(2, 16, 32, [1, 2, 2], [1, 1, 1]),
        block(2, 32, 32, [1, 1, 1], [1, 1, 1]),
    ]
    return MViT(
        spatial_size=(size, size), temporal_size=frames, block_setting=blocks, residual_pool=True,
        residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True, num_classes=3,
    )  # fmt: skip


def _init_as_video_resnets(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions, as torchvision's video ResNets initialise theirs: S3D keeps
    PyTorch's default, its last block's activations shrink to about 1e-7 and its random scores are its
    classifier's biases alone (the top class's map blank)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


#: (model, frames, size, layer chosen, its grid): the smallest clips each model takes (S3D's final
#: average pool needs a 2x7x7 map: 13 frames of 209x209).
TORCHVISION_VIDEO = [
    ("r3d_18", 8, 64, "layer4.1.relu", (1, 4, 4)),  # time reduced to 1 frame at the last stage
    ("mc3_18", 8, 64, "layer4.1.relu", (8, 4, 4)),  # time never downsampled
    ("r2plus1d_18", 8, 64, "layer4.1.relu", (1, 4, 4)),
    ("s3d", 13, 209, "features.15", (2, 7, 7)),  # time halved thrice
    ("swin3d_t", 8, 64, "norm", (4, 2, 2)),  # channels-last (B, T', h, w, C), time halved once
    ("mvit_v2_s", 4, 32, "blocks.2.norm1", (2, 4, 4)),  # tokens (B, 1 + t*h*w, C)
]


@pytest.mark.parametrize(("name", "frames", "size", "layer", "grid"), TORCHVISION_VIDEO)
def test_torchvision_video_models(name, frames, size, layer, grid):
    from torchvision.models import video

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "mvit_v2_s":
            model = _small_mvit_v2_s(frames, size).eval()
        else:
            model = getattr(video, name)(num_classes=3).eval()
    if name == "s3d":
        _init_as_video_resnets(model)
    x = torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(0))
    choice = find_target_layer(model, x)
    assert (choice.name, choice.grid) == (layer, grid)
    maps = GradCAM(model)(x)
    assert maps.shape == (1, frames, size, size) and maps.max() > 0.5
