"""Token layout of a vision transformer: how many prefix tokens come before the patch grid, and its shape.

One small function, :func:`token_layout`, meant to be swapped for a shared helper later.
"""

from __future__ import annotations

from typing import Sequence

#: The most prefix tokens tried when the count is inferred (class + distillation + 8 registers).
MAX_PREFIX_TOKENS = 10


def token_layout(
    num_tokens: int, image_size: Sequence[int], prefix_tokens: int | None = None
) -> tuple[int, tuple[int, int]]:
    """Split ``num_tokens`` into prefix tokens (class, distillation, registers) and an ``h x w`` grid.

    The grid must tile the image with square patches: ``H / h == W / w``, an integer. With
    ``prefix_tokens`` None, the smallest prefix count (0 to :data:`MAX_PREFIX_TOKENS`) that leaves
    such a grid is taken; e.g. 197 tokens on 224x224 give 1 + 14x14, 201 give 5 + 14x14.

    Args:
        num_tokens: the tokens of the sequence (prefix + patches).
        image_size: ``(H, W)`` of the input.
        prefix_tokens: the prefix count, if known.

    Returns:
        ``(prefix_tokens, (h, w))``.

    Raises:
        ValueError: no prefix count leaves a patch grid that tiles the image.
    """
    height, width = int(image_size[0]), int(image_size[1])
    candidates = range(MAX_PREFIX_TOKENS + 1) if prefix_tokens is None else (prefix_tokens,)
    for prefix in candidates:
        patches = num_tokens - prefix
        if patches <= 0:
            break
        for h in range(1, patches + 1):
            if patches % h:
                continue
            w = patches // h
            if height % h == 0 and width % w == 0 and height // h == width // w:
                return prefix, (h, w)
    given = "" if prefix_tokens is None else f" after {prefix_tokens} prefix tokens"
    raise ValueError(
        f"{num_tokens} tokens do not form a grid of square patches over a {height}x{width} input{given}; "
        "pass prefix_tokens=... (class/distillation/register tokens before the patches) if the count is "
        "unusual, or an input whose size the model's patches divide"
    )
