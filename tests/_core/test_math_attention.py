"""Attention by its math formulation for ShapleyCAM's call: equal to torch's SDPA, twice
differentiable, and ShapleyCAM on a timm ViT with fused attention equal to the same ViT unfused."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam import GradCAM, ShapleyCAM
from pytorch_grad_cam._core.math_attention import MathAttention, math_attention
from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST

timm = pytest.importorskip("timm")


def test_math_attention_by_hand():
    """One query, two keys: weights softmax([1, 0] / sqrt(2)) on values 2 and 4."""
    q = torch.tensor([[[1.0, 1.0]]])
    k = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    v = torch.tensor([[[2.0], [4.0]]])
    first = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    assert math_attention(q, k, v).item() == pytest.approx(2 * first + 4 * (1 - first), abs=1e-6)
    assert math_attention(q, k, v, scale=0.0).item() == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("options", [{}, {"is_causal": True}, {"scale": 0.3}, {"mask": True}])
def test_math_attention_equals_torch_sdpa(options):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    kwargs = dict(options)
    if kwargs.pop("mask", False):
        kwargs["attn_mask"] = torch.randn(5, 5, generator=g)
    torch.testing.assert_close(
        math_attention(q, k, v, **kwargs), F.scaled_dot_product_attention(q, k, v, **kwargs)
    )
    with MathAttention():
        routed = F.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(routed, math_attention(q, k, v, **kwargs), rtol=0, atol=0)


def test_math_attention_has_a_second_derivative():
    """d2/dq2 of sum(attention^2), checked against finite differences of the first derivative."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, 3, 2, generator=g, dtype=torch.float64) for _ in range(3))
    q.requires_grad_(True)

    def grad_of(query):
        (grad,) = torch.autograd.grad(math_attention(query, k, v).square().sum(), query, create_graph=True)
        return grad

    direction = torch.randn(q.shape, generator=g, dtype=torch.float64)
    (hvp,) = torch.autograd.grad(grad_of(q), q, grad_outputs=direction)
    eps = 1e-6
    numeric = (grad_of(q + eps * direction) - grad_of(q - eps * direction)) / (2 * eps)
    torch.testing.assert_close(hvp, numeric.detach(), rtol=1e-5, atol=1e-8)
    assert hvp.abs().max() > 1e-3


def test_shapleycam_on_a_timm_vit_with_fused_attention():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=10).eval()
    assert model.blocks[0].attn.fused_attn  # torch's fused CPU kernel: no double backward
    unfused = copy.deepcopy(model)
    for block in unfused.blocks:
        block.attn.fused_attn = False  # timm's own q k^T softmax v
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = [ClassifierOutputReST(3), ClassifierOutputReST(7)]
    before = model_snapshot(model)
    fused_maps = ShapleyCAM(model)(x, targets)
    assert_same_model(before, model_snapshot(model))
    np.testing.assert_allclose(fused_maps, ShapleyCAM(unfused)(x, targets), atol=1e-5)
    # the Hessian correction is there: not GradCAM's maps
    assert np.abs(fused_maps - GradCAM(model)(x, targets)).max() > 1e-3
