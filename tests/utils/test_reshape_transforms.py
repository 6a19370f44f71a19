"""Reshape transforms, and CAMs through them on small random-weight ViT and Swin models."""

from collections import OrderedDict

import numpy as np
import pytest
import timm
import torch

from pytorch_grad_cam import EigenCAM, GradCAM
from pytorch_grad_cam.utils.reshape_transforms import (
    fasterrcnn_reshape_transform,
    multiscale_reshape_transform,
    swinT_reshape_transform,
    token_grid,
    token_grid_reshape_transform,
    vit_reshape_transform,
)


def test_vit_drops_leading_tokens_and_puts_channels_first():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # class token + 2x2 patches
    out = vit_reshape_transform(tokens, 2, 2)
    assert out.shape == (2, 3, 2, 2)
    # patch (i, j) is token 1 + 2 i + j; channel c of it is tokens[:, 1 + 2i + j, c]
    for i in range(2):
        for j in range(2):
            torch.testing.assert_close(out[:, :, i, j], tokens[:, 1 + 2 * i + j, :])
    torch.testing.assert_close(vit_reshape_transform(tokens, None, None), out)  # inferred 2x2 grid
    # two leading tokens (class + distillation) are dropped alike
    torch.testing.assert_close(vit_reshape_transform(torch.cat([tokens[:, :1], tokens], 1), 2, 2), out)


def test_vit_errors():
    with pytest.raises(ValueError, match="expects \\(B, tokens, C\\)"):
        vit_reshape_transform(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="cannot hold a 14x14 grid"):
        vit_reshape_transform(torch.zeros(1, 50, 8))
    with pytest.raises(ValueError, match="both height and width"):
        vit_reshape_transform(torch.zeros(1, 5, 8), 2, None)


def test_swin_token_and_nhwc_layouts():
    tokens = torch.randn(2, 6, 4)
    out = swinT_reshape_transform(tokens, 2, 3)
    assert out.shape == (2, 4, 2, 3)
    torch.testing.assert_close(out[:, :, 1, 2], tokens[:, 5, :])
    nhwc = tokens.view(2, 2, 3, 4)
    torch.testing.assert_close(swinT_reshape_transform(nhwc), out)
    with pytest.raises(ValueError, match="not a 7x7 grid"):
        swinT_reshape_transform(tokens)


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=4
    ).eval()


@pytest.fixture(scope="module")
def tiny_swin():
    torch.manual_seed(0)
    return timm.models.swin_transformer.SwinTransformer(
        img_size=32, patch_size=4, window_size=2, embed_dim=8, depths=(1, 1), num_heads=(1, 1), num_classes=3
    ).eval()


def test_vit_cam_batch_invariant_and_localised(tiny_vit):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(
        tiny_vit, [tiny_vit.blocks[-1].norm1], reshape_transform=lambda t: vit_reshape_transform(t, 4, 4)
    )
    batch = cam(x, [1, 2])
    singles = np.concatenate([cam(x[:1], [1]), cam(x[1:], [2])])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert batch.shape == (2, 32, 32) and batch.max() > 0.99


def test_swin_cam_equals_manual_nhwc_computation(tiny_swin):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    layer = tiny_swin.layers[-1].blocks[-1].norm1
    got = EigenCAM(tiny_swin, [layer], reshape_transform=swinT_reshape_transform)(x)
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            tiny_swin(x)
    finally:
        handle.remove()
    a = captured["a"][0]  # (H, W, C)
    rows = a.reshape(-1, a.shape[-1]).double()
    rows = rows - rows.mean(0)
    _, _, vh = torch.linalg.svd(rows)
    proj = rows @ vh[0]
    proj = torch.relu(proj * torch.sign(proj[proj.abs().argmax()])).view(1, 1, *a.shape[:2])
    proj = proj / (proj.max() + 1e-7)
    expected = torch.nn.functional.interpolate(
        proj.float(), size=(32, 32), mode="bilinear", align_corners=False
    )
    expected = (expected - expected.min()) / (expected.max() - expected.min() + 1e-7)
    np.testing.assert_allclose(got[0], expected[0, 0].numpy(), atol=1e-5)


def test_fasterrcnn_reshape_transform_golden():
    levels = OrderedDict(
        [
            ("0", torch.tensor([[[[1.0, -2.0, 3.0, -4.0], [5.0, 6.0, -7.0, 8.0]]]])),
            ("pool", torch.tensor([[[[-5.0, 2.0]]]])),
        ]
    )
    out = fasterrcnn_reshape_transform(levels)
    # level "0" (2x4) -> |.| -> bilinear to 1x2 (half-pixel centres: the mean of each 2x2 block)
    expected = torch.tensor([[[[(1 + 2 + 5 + 6) / 4, (3 + 4 + 7 + 8) / 4]], [[5.0, 2.0]]]])
    torch.testing.assert_close(out, expected)


def test_fasterrcnn_reshape_transform_bad_input():
    with pytest.raises(ValueError, match="expects the backbone's dict of feature maps"):
        fasterrcnn_reshape_transform(torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="level 'pool' must be a"):
        fasterrcnn_reshape_transform({"0": torch.zeros(1, 1, 2, 2), "pool": torch.zeros(2, 2)})


def test_multiscale_reshape_resizes_to_the_chosen_level_and_concatenates():
    fine = torch.arange(16.0).view(1, 1, 4, 4)
    coarse = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[5.0, 6.0], [7.0, 8.0]]]]).view(1, 2, 2, 2)
    result = multiscale_reshape_transform({"p3": fine, "p4": coarse})
    assert result.shape == (1, 3, 4, 4)
    torch.testing.assert_close(result[:, :1], fine)  # the reference level is not resampled
    # nearest: each coarse value covers a 2x2 block of the fine grid
    nearest = multiscale_reshape_transform([fine, coarse], mode="nearest")
    blocks = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(nearest[0, 1], blocks)
    # the coarsest grid: the fine level is averaged down (bilinear, no antialias: at the 2x2 block centres)
    down = multiscale_reshape_transform((fine, coarse), level=-1)
    torch.testing.assert_close(down[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    torch.testing.assert_close(down[:, 1:], coarse)


def test_multiscale_reshape_sum_and_errors():
    a, b = torch.ones(1, 2, 4, 4), torch.full((1, 2, 2, 2), 3.0)
    summed = multiscale_reshape_transform([a, b], reduce="sum")
    torch.testing.assert_close(summed, torch.full((1, 2, 4, 4), 4.0))
    with pytest.raises(ValueError, match="equal channel counts"):
        multiscale_reshape_transform([a, torch.ones(1, 3, 2, 2)], reduce="sum")
    with pytest.raises(ValueError, match="reduce must be 'concat' or 'sum'"):
        multiscale_reshape_transform([a], reduce="mean")
    with pytest.raises(ValueError, match="non-empty dict or list"):
        multiscale_reshape_transform(a)
    with pytest.raises(ValueError, match=r"level 'x' is not \(B, C, h, w\)"):
        multiscale_reshape_transform({"x": torch.ones(2, 3)})


@pytest.mark.parametrize(
    ("tokens", "image_size", "grid"),
    [(96, (96, 64), (12, 8)), (300, (480, 640), (15, 20)), (20, (100, 150), (4, 5)), (16, (64, 64), (4, 4))],
)
def test_token_grid_follows_the_image_aspect(tokens, image_size, grid):
    assert token_grid(tokens, image_size) == grid


def test_token_grid_reshape_transform_lays_tokens_out_row_by_row():
    tokens = torch.arange(24.0).view(1, 6, 4)  # 6 tokens of 4 channels: a 2x3 grid for a 20x30 image
    result = token_grid_reshape_transform(tokens, (20, 30))
    assert result.shape == (1, 4, 2, 3)
    torch.testing.assert_close(result[0, 1], torch.tensor([[1.0, 5.0, 9.0], [13.0, 17.0, 21.0]]))
    with pytest.raises(ValueError, match=r"expects \(B, tokens, C\)"):
        token_grid_reshape_transform(torch.ones(1, 2, 3, 4), (2, 2))
