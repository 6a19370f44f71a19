"""Layouts: grids aligned with the input, token prefixes found, and the transforms they give."""

from __future__ import annotations

import pytest
import torch

from pytorch_grad_cam.layer_search.layouts import (
    Layout,
    LayoutTransform,
    grid_misfit,
    known_prefix_tokens,
    read_layout,
    token_grid,
    tokens_to_map,
)
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform


@pytest.mark.parametrize(
    ("grid", "size", "expected"),
    [
        ((7, 7), (224, 224), 0.0),
        ((4, 6), (32, 48), 0.0),
        ((2, 2), (48, 64), 32 / 24 - 1),  # ceil(48/32) = 2: aligned, strides 24 and 32
        ((3, 3), (40, 40), 0.0),
        ((5, 5), (32, 48), None),  # not the input's aspect
        ((1, 7), (224, 224), None),  # a single row is not a grid
        ((300, 300), (224, 224), None),  # finer than the input
        ((7,), (100,), 0.0),  # 1-D
    ],
)
def test_grid_misfit(grid, size, expected):
    if expected is None:
        assert grid_misfit(grid, size) is None
    else:
        assert grid_misfit(grid, size) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("tokens", "size", "prefix", "expected"),
    [
        (197, (224, 224), None, (1, (14, 14), 0.0)),  # class token
        (198, (224, 224), None, (2, (14, 14), 0.0)),  # class + distillation
        (21, (16, 16), None, (5, (4, 4), 0.0)),  # class + 4 registers (P = 1 gives 4x5, a worse fit)
        (25, (32, 48), None, (1, (4, 6), 0.0)),  # non-square
        (49, (224, 224), None, (0, (7, 7), 0.0)),  # no prefix (Mixer, Swin)
        (21, (16, 16), 1, (1, (4, 5), 0.25)),  # a stated prefix wins when it fits
        (21, (16, 16), 3, (5, (4, 4), 0.0)),  # ... and is ignored when it does not
    ],
)
def test_token_grid(tokens, size, prefix, expected):
    prefix_found, grid, misfit = token_grid(tokens, size, prefix)
    assert (prefix_found, grid) == expected[:2]
    assert misfit == pytest.approx(expected[2])


def test_token_grid_without_a_fit():
    assert token_grid(7, (4, 64)) is None  # 7 - P for P = 0..3: 7, 2x3, 5, 2x2, none with a 1:16 aspect
    assert token_grid(50, (8,)) is None  # tokens are read for 2-D inputs only


def test_layout_transforms_equal_the_handwritten_ones():
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)
    layout = read_layout(tokens, (2, 3, 16, 16))
    assert layout == Layout("tokens", (4, 4), 3, prefix=1)
    torch.testing.assert_close(LayoutTransform(layout)(tokens), vit_reshape_transform(tokens, 4, 4))
    nhwc = torch.arange(2 * 7 * 7 * 5, dtype=torch.float32).reshape(2, 7, 7, 5)
    layout = read_layout(nhwc, (2, 3, 224, 224))
    assert (layout.kind, layout.grid, layout.channels) == ("channels_last", (7, 7), 5)
    torch.testing.assert_close(LayoutTransform(layout)(nhwc), swinT_reshape_transform(nhwc))
    nchw = torch.zeros(2, 5, 7, 7)
    assert read_layout(nchw, (2, 3, 224, 224)).kind == "channels_first"
    assert LayoutTransform(read_layout(nchw, (2, 3, 224, 224)))(nchw) is nchw


def test_non_square_tokens_by_hand():
    # 1 class token + a 2x3 grid, 1 channel: patch (r, c) holds 10 * r + c
    patches = torch.tensor([0.0, 1, 2, 10, 11, 12])
    tokens = torch.cat([torch.tensor([-1.0]), patches]).reshape(1, 7, 1)
    expected = torch.tensor([[[[0.0, 1, 2], [10, 11, 12]]]])
    torch.testing.assert_close(tokens_to_map(tokens, (32, 48)), expected)
    torch.testing.assert_close(tokens_to_map(tokens, (32, 48), prefix=2), expected)  # 5 tokens: no grid
    with pytest.raises(
        ValueError, match=r"7 tokens cannot be a patch grid with the aspect of a \(4, 64\) input"
    ):
        tokens_to_map(tokens, (4, 64))


def test_tuple_and_model_output_elements():
    tokens = torch.randn(2, 17, 4)
    attention = torch.randn(2, 2, 17, 17)
    layout = read_layout((torch.tensor(1.0), tokens, attention), (2, 3, 16, 16))
    assert (layout.element, layout.kind) == (1, "tokens")
    transform = LayoutTransform(layout)
    torch.testing.assert_close(
        transform((torch.tensor(1.0), tokens, attention)), vit_reshape_transform(tokens, 4, 4)
    )
    assert read_layout({"logits": torch.randn(2, 10)}, (2, 3, 16, 16)) is None
    with pytest.raises(ValueError, match="found for another input size"):
        transform(torch.randn(2, 26, 4))


def test_ambiguous_channels_first_or_last_is_flagged():
    layout = read_layout(torch.zeros(1, 8, 8, 8), (1, 3, 32, 32))
    assert layout.ambiguous and layout.kind == "channels_first"
    assert not read_layout(torch.zeros(1, 16, 8, 8), (1, 3, 32, 32)).ambiguous


def test_known_prefix_tokens(tiny_vit):
    timm = pytest.importorskip("timm")
    assert known_prefix_tokens(tiny_vit) == (1, "timm VisionTransformer.num_prefix_tokens")
    torch.manual_seed(0)
    registers = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, embed_dim=8, depth=1, num_heads=2, num_classes=4, reg_tokens=4
    )
    assert known_prefix_tokens(registers)[0] == 5
    assert known_prefix_tokens(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))) is None
