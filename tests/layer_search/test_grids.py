"""Grids of video layers (issue 20, item 3): token counts split into prefix tokens and ``t x h x w``
grids, a grid returned beside the tokens, and the readings and transforms they give."""

from __future__ import annotations

import pytest
import torch

from pytorch_grad_cam.layer_search.grids import carried_grid, volume_token_grids
from pytorch_grad_cam.layer_search.layouts import TOKENS, LayoutTransform, read_layout


@pytest.mark.parametrize(
    ("tokens", "size", "prefix", "carried", "expected"),
    [
        (97, (6, 16, 16), None, None, (1, ((6, 4, 4),), 0.0)),  # 96 = 6*4*4 only (1x96, 2x48 ... no square)
        (393, (16, 224, 224), None, None, (1, ((2, 14, 14), (8, 7, 7)), 0.0)),  # MViT-v2-S's last stage
        (393, (16, 224, 224), None, (8, 7, 7), (1, ((8, 7, 7),), 0.0)),  # ... with the grid it returns
        (
            393,
            (16, 224, 224),
            None,
            (8, 7, 6),
            (1, ((2, 14, 14), (8, 7, 7)), 0.0),
        ),  # a grid that does not fit
        (32, (8, 16, 16), None, None, (0, ((2, 4, 4), (8, 2, 2)), 0.0)),  # no prefix
        (33, (8, 16, 16), 1, None, (1, ((2, 4, 4), (8, 2, 2)), 0.0)),  # a stated prefix
        (17, (8, 64, 64), None, None, (1, ((1, 4, 4), (4, 2, 2)), 0.0)),  # time reduced to one frame
        (1 + 3 * 2 * 3, (4, 32, 48), None, None, (1, ((3, 2, 3),), 0.0)),  # non-square frames
    ],
)
def test_volume_token_grids(tokens, size, prefix, carried, expected):
    assert volume_token_grids(tokens, size, prefix, carried) == expected


def test_volume_token_grids_without_a_fit():
    # 7 - P tokens (P = 0..3) make no grid 16 times as wide as tall on any number of frames
    assert volume_token_grids(7, (4, 4, 64)) is None
    # 9x4x4 is not read on 8 frames (more frames than the input); 1x12x12 and 4x6x6 are
    assert volume_token_grids(1 + 9 * 4 * 4, (8, 16, 16), 1) == (1, ((1, 12, 12), (4, 6, 6)), 0.0)


def test_carried_grid():
    tokens = torch.zeros(1, 5, 2)
    assert carried_grid((tokens, (1, 2, 2))) == (1, 2, 2)
    assert carried_grid([tokens, torch.Size((1, 2, 2))]) == (1, 2, 2)
    assert carried_grid((tokens, (2, 2))) is None  # a video grid has 3 axes
    assert carried_grid((tokens, (True, 2, 2))) is None  # not a count
    assert carried_grid((tokens, (0, 2, 2))) is None
    assert carried_grid(tokens) is None


def test_video_tokens_read_and_reshaped():
    """33 tokens on a (8, 16, 16) clip: a class token + 2x4x4 or 8x2x2 alike (ambiguous), unless the
    layer returns its grid; the transform puts token 1 + (t*4 + r)*4 + c at [t, r, c]."""
    tokens = torch.arange(33 * 2, dtype=torch.float32).reshape(1, 33, 2)
    both = read_layout(tokens, (1, 3, 8, 16, 16))
    assert (both.kind, both.prefix, both.ambiguous, both.alternatives) == (
        TOKENS,
        1,
        True,
        ((2, 4, 4), (8, 2, 2)),
    )
    layout = read_layout((tokens, (2, 4, 4)), (1, 3, 8, 16, 16))
    assert (layout.kind, layout.grid, layout.prefix, layout.ambiguous) == (TOKENS, (2, 4, 4), 1, False)
    assert layout.describe() == "tokens (1 prefix + 2x4x4)"
    maps = LayoutTransform(layout)((tokens, (2, 4, 4)))
    assert maps.shape == (1, 2, 2, 4, 4)
    assert maps[0, 1, 1, 2, 3].item() == tokens[0, 1 + (1 * 4 + 2) * 4 + 3, 1].item() == 2 * 28 + 1
    with pytest.raises(ValueError, match=r"expected \(B, 1 \+ 2\*4\*4, C\) tokens"):
        LayoutTransform(layout)(tokens[:, :20])
