"""The token layout: prefix tokens and the patch grid."""

from __future__ import annotations

import pytest

from pytorch_grad_cam.layer_search.layouts import MAX_SQUARE_PATCH_PREFIX, token_grid
from pytorch_grad_cam.layer_search.layouts import square_patch_layout as token_layout


@pytest.mark.parametrize(
    ("tokens", "size", "expected"),
    [
        (197, (224, 224), (1, (14, 14))),  # class token
        (198, (224, 224), (2, (14, 14))),  # class + distillation
        (201, (224, 224), (5, (14, 14))),  # class + 4 registers
        (196, (224, 224), (0, (14, 14))),  # none
        (25, (32, 48), (1, (4, 6))),  # non-square
        (21, (16, 16), (5, (4, 4))),  # the smallest prefix wins over 17 + 2x2
    ],
)
def test_token_layout(tokens, size, expected):
    assert token_layout(tokens, size) == expected


def test_given_prefix_and_errors():
    assert token_layout(21, (16, 16), prefix_tokens=17) == (17, (2, 2))
    with pytest.raises(ValueError, match=r"60 tokens do not form a grid of square patches over a 224x224"):
        token_layout(60, (224, 224))
    with pytest.raises(ValueError, match="after 2 prefix tokens"):
        token_layout(197, (224, 224), prefix_tokens=2)


def test_one_room_for_token_layouts_two_readings():
    # the attention methods' exact tiling lives next to the layer outputs' best fit. 1 + 15x15 tokens
    # on 224x224: a downsampling (stride 14.9) that the best fit accepts, but no whole square patches:
    # the exact tiling refuses.
    assert MAX_SQUARE_PATCH_PREFIX >= 5
    assert token_grid(226, (224, 224)) == (1, (15, 15), 0.0)
    with pytest.raises(ValueError, match="226 tokens do not form a grid of square patches"):
        token_layout(226, (224, 224))
