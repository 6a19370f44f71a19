"""The first call's lent forward against a call with the layer given, where a module between the lent
group's first module and the chosen layer computes differently with gradients on: an attention whose
``scaled_dot_product_attention`` mask is made from a parameter (timm CoAtNet's relative-position bias;
``benchmarks/zoo_first_call.py`` found its maps 1.4e-5 apart before the lent view was kept for the
group's first module only), and a module that reads the grad mode itself."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pytorch_grad_cam import GradCAM, layer_search
from pytorch_grad_cam.layer_search import find_target_layer


class BiasedAttention(nn.Module):
    """Two-head self-attention over a ``(B, C, 8, 8)`` map, its mask a parameter (as a
    relative-position bias): with gradients on the mask requires grad, and CPU's SDPA then takes
    another kernel than under ``no_grad`` (outputs about 1e-7 apart)."""

    def __init__(self, channels: int, heads: int = 2, side: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.bias = nn.Parameter(torch.randn(1, heads, side * side, side * side))
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x).view(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2)
        q, k, v = qkv.contiguous().unbind(1)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self.bias * 1.0)
        return self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class AttentionNet(nn.Module):
    """stem conv -> (norm1 -> attention, residual) -> norm -> mean -> linear; the search picks
    ``norm`` from a first group starting at ``block_norm`` (the map the attention reads)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, channels, 4, stride=4)
        self.block_norm = nn.BatchNorm2d(channels)
        self.attn = BiasedAttention(channels)
        self.norm = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        features = features + self.attn(self.block_norm(features))
        return self.head(self.norm(features).mean(dim=(2, 3)))


def _first_and_given(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, str, str]:
    layer_search.clear_cache()
    cam = GradCAM(model)
    first = cam(x)
    layer_search.clear_cache()
    choice = find_target_layer(model, x)
    given = GradCAM(model, [choice.layer], reshape_transform=choice.reshape_transform)(x)
    return first, given, cam.layer_choice.name, choice.name


def _kernels_differ(attention: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        plain = attention(x)
    with torch.enable_grad():
        tracked = attention(x).detach()
    return not torch.equal(plain, tracked)


def test_the_fixture_differs_only_by_the_attention_kernel():
    # with one SDPA kernel forced, the lent forward's maps are the given layer's, bit for bit
    model = AttentionNet().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with sdpa_kernel(SDPBackend.MATH):
        first, given, chosen, found = _first_and_given(model, x)
    assert chosen == found == "norm"
    np.testing.assert_array_equal(first, given)


def test_first_call_maps_equal_the_given_layer_after_a_grad_mode_dependent_attention():
    model = AttentionNet().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batches = []
    handle = model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        first, given, chosen, found = _first_and_given(model, x)
    finally:
        handle.remove()
    assert chosen == found == "norm"
    # recorded, lent (its group starts at ``block_norm``: no view of ``norm``), the call's own; then
    # the search's two and the given layer's call
    assert batches == [1] * 6
    np.testing.assert_array_equal(first, given)


class GradModeShift(nn.Module):
    """Doubles its input with gradients on, keeps it without (as a fast path taken only under
    ``no_grad`` would differ, far more)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + torch.is_grad_enabled())


class ShiftNet(nn.Module):
    """conv -> tokens -> layer norm (the map the attention reads) -> attention, residual -> grad-mode
    shift -> linear per token (the chosen layer) -> mean -> linear; the first group reaches back to
    ``norm1``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 4, stride=4)
        self.norm1 = nn.LayerNorm(4)
        self.attention = nn.MultiheadAttention(4, 1, batch_first=True)
        self.shift = GradModeShift()
        self.last = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        normed = self.norm1(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return self.head(self.last(self.shift(tokens)).relu().mean(dim=1))


def test_a_module_that_reads_the_grad_mode_before_the_chosen_layer():
    model = ShiftNet().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    first, given, chosen, found = _first_and_given(model, x)
    assert chosen == found == "last"
    assert np.abs(first - given).max() == 0.0  # the lent view would see the map doubled
