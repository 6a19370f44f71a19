"""The layer search's rule 1 refined: a map every position of which is equal per channel (a pooled
map broadcast or upsampled to a grid) carries no spatial information and is not a target layer."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.layer_search.layouts import carries_spatial_information


class Broadcast(nn.Module):
    """conv (8x8 -> 4x4) -> global pooling -> upsampled back to 4x4 -> 1x1 conv -> classifier.

    ``up`` and ``mix`` have 4x4 grids with the input's aspect and a gradient, but each is one value
    per channel copied to every cell: the answer is ``conv``.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.up = nn.Upsample(size=(4, 4), mode="nearest")
        self.mix = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mix(self.up(self.pool(self.conv(x)))).mean(dim=(2, 3)))


def test_carries_spatial_information_on_hand_made_maps():
    varying = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [5.0, 5.0]]]])  # (1, 2, 2, 2)
    assert carries_spatial_information(varying)  # one channel varies: enough
    assert not carries_spatial_information(varying[:, 1:])  # 5 everywhere
    assert not carries_spatial_information(torch.zeros(2, 3, 4, 4))
    constant = torch.arange(6.0).reshape(2, 3, 1, 1).expand(2, 3, 5, 5)  # a pooled map broadcast
    assert not carries_spatial_information(constant)
    # one float32 step at 1000 (2**-14, 6e-8 of it) is rounding, 1e-5 of it is a map
    assert not carries_spatial_information(torch.tensor([[[1000.0, 1000.0 + 2**-14]]]))
    assert carries_spatial_information(torch.tensor([[[1000.0, 1000.01]]]))
    # 1-D maps (B, C, L) too; a batch where only the second image varies carries information
    assert carries_spatial_information(torch.tensor([[[1.0, 1.0, 1.0]], [[0.0, 1.0, 0.0]]]))
    # a non-finite value is not this rule's to judge (it counts as varying), even in a constant map
    assert carries_spatial_information(torch.tensor([[[1.0, float("nan"), 1.0]]]))
    assert carries_spatial_information(torch.full((1, 2, 3, 3), float("-inf")))
    # a channels-last map read through a permuted view (not contiguous) reads alike
    assert not carries_spatial_information(constant.contiguous().permute(0, 2, 3, 1).permute(0, 3, 1, 2))
    assert carries_spatial_information(varying.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))

    # the first channels are read first: a map where only a later channel varies carries information
    late = torch.full((2, 12, 3, 3), 7.0)
    late[1, 10, 0, 2] = 8.0
    assert carries_spatial_information(late)
    late[1, 10, 0, 2] = 7.0 + 2**-20  # under 1e-6 of the largest magnitude (7): rounding
    assert not carries_spatial_information(late)

    # a non-finite value is not this rule's to judge: it counts as information
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert carries_spatial_information(torch.tensor([[[0.0, 0.0, bad]]]))
        assert carries_spatial_information(torch.tensor([[[bad, bad, bad]]]))


class _LargestMade(TorchDispatchMode):
    """Records the largest number of elements of any new tensor an operation returns (a view of
    its input, such as ``detach``'s, is not new memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        given = {
            t.untyped_storage().data_ptr()
            for t in pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        out = func(*args, **kwargs)
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in given:
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("layout", ["contiguous", "channels-last", "tokens"])
def test_carries_spatial_information_makes_no_map_sized_tensor(layout):
    """The search runs the rule on every module's output inside its forward (issue 18: the
    automatic first call at batch 1 was 1.46x the forward, the rule's ``abs`` of the stem's
    output on top of the forward's own peak). The largest tensor it may make is the (B, C) = 6
    spreads, also for a permuted view, which a ``flatten`` would copy (384 elements)."""
    maps = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    if layout == "channels-last":
        maps = maps.permute(0, 2, 3, 1).contiguous().movedim(-1, 1)
    elif layout == "tokens":
        tokens = torch.cat([torch.zeros(2, 1, 3), maps.flatten(2).transpose(1, 2)], dim=1)  # (2, 1 + 64, 3)
        maps = tokens[:, 1:, :].reshape(2, 8, 8, 3).permute(0, 3, 1, 2)
    with _LargestMade() as made:
        assert carries_spatial_information(maps)
    assert made.largest == 6


def test_a_broadcast_pooled_map_is_passed_over():
    model = Broadcast().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    choice = find_target_layer(model, x)
    assert choice.name == "conv"
    assert choice.grid == (4, 4)


def test_alexnet_at_64_is_explained_by_its_last_3x3_map_not_avgpool():
    """At 64x64 AlexNet's features end 1x1 and ``avgpool`` copies them to 6x6 (blank CAMs)."""
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(model)
    maps = cam(x)
    assert cam.layer_choice.name == "features.11"
    assert cam.layer_choice.grid == (3, 3)
    assert maps.shape == (1, 64, 64)
    assert maps.max() == pytest.approx(1.0, abs=1e-5) and maps.min() == 0.0
    assert cam.diagnostics == []


def test_levit_at_random_init_gets_its_last_map_that_varies():
    """timm's LeViT zero-initialises its residual branches and its activations shrink to ~1e-4, so
    the stage-2 downsampling attention is uniform and all 16 stage-2 tokens are equal: the last
    map with spatial information is stage 1's 7x7 (it was the blank ``stages.2.blocks.3``)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("levit_128s", pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(model)
    maps = cam(x)
    assert cam.layer_choice.name == "stages.1.blocks.2"
    assert (cam.layer_choice.layout.kind, cam.layer_choice.grid) == ("tokens", (7, 7))
    assert maps.max() > 0.99 and maps.min() == 0.0 and maps.std() > 0.05  # not blank
    assert cam.diagnostics == []
