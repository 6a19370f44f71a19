"""Reshape transforms: token outputs of transformers as ``(B, C, h, w)`` maps.

A reshape transform is applied alike to a target layer's output and to its gradient, so it should
only select, reshape and permute (no arithmetic on the values); :func:`fasterrcnn_reshape_transform`
is the exception that 1.5.x defines, meant for gradient-free methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F


def _grid(tokens: int, height: int | None, width: int | None) -> tuple[int, int]:
    if height is None and width is None:
        side = math.isqrt(tokens)
        return side, side
    if height is None or width is None:
        raise ValueError("pass both height and width, or neither")
    return int(height), int(width)


def vit_reshape_transform(
    tensor: torch.Tensor, height: int | None = 14, width: int | None = 14
) -> torch.Tensor:
    """ViT/DeiT tokens ``(B, 1 + h*w, C)`` to ``(B, C, h, w)``.

    The leading tokens that are not patches (the class token, and a distillation or register
    tokens if the model has them) are dropped: the last ``h*w`` tokens are the patches.

    Args:
        tensor: ``(B, N, C)`` token features, ``N >= height * width``.
        height: patch rows (14 for a 224x224 input with 16x16 patches). None with ``width=None``
            takes the largest square grid that fits in the tokens.
        width: patch columns.

    Returns:
        ``(B, C, height, width)``.
    """
    if tensor.dim() != 3:
        raise ValueError(f"vit_reshape_transform expects (B, tokens, C); got shape {tuple(tensor.shape)}")
    height, width = _grid(tensor.shape[1], height, width)
    patches = height * width
    if tensor.shape[1] < patches:
        raise ValueError(
            f"vit_reshape_transform: {tensor.shape[1]} tokens cannot hold a {height}x{width} grid of patches"
        )
    result = tensor[:, tensor.shape[1] - patches :, :]
    return result.reshape(tensor.shape[0], height, width, tensor.shape[2]).permute(0, 3, 1, 2)


def swinT_reshape_transform(tensor: torch.Tensor, height: int = 7, width: int = 7) -> torch.Tensor:
    """Swin Transformer features to ``(B, C, h, w)``.

    Accepts the token layout ``(B, h*w, C)`` (no class token) and the ``(B, H, W, C)`` layout of
    newer timm Swin layers (``height``/``width`` are then read from the tensor).

    Args:
        tensor: ``(B, h*w, C)`` or ``(B, H, W, C)``.
        height: rows of the token grid (7 for Swin-T at 224x224 in the last stage).
        width: columns of the token grid.

    Returns:
        ``(B, C, h, w)``.
    """
    if tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2)
    if tensor.dim() != 3:
        raise ValueError(
            f"swinT_reshape_transform expects (B, h*w, C) or (B, H, W, C); got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[1] != height * width:
        raise ValueError(
            f"swinT_reshape_transform: {tensor.shape[1]} tokens are not a {height}x{width} grid; "
            "pass the right height= and width="
        )
    return tensor.reshape(tensor.shape[0], height, width, tensor.shape[2]).permute(0, 3, 1, 2)


def fasterrcnn_reshape_transform(x: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The feature pyramid of a torchvision Faster R-CNN backbone as one ``(B, C_total, h, w)`` map.

    As pytorch-grad-cam 1.5.x builds it: every level's absolute values are resized (bilinear) to
    the size of the last, coarsest level (``"pool"`` in torchvision's FPN) and the levels are
    concatenated along the channels. Use it with ``target_layers=[model.backbone]``. The absolute
    value discards signs, which suits gradient-free methods such as EigenCAM; a gradient method
    would see the gradients' magnitudes only.

    Args:
        x: the backbone output, an ordered mapping of level name to ``(B, C, h_l, w_l)``.

    Returns:
        ``(B, sum_l C_l, h, w)``.
    """
    if not isinstance(x, Mapping) or not x:
        raise ValueError(
            "fasterrcnn_reshape_transform expects the backbone's dict of feature maps "
            f"(target_layers=[model.backbone]); got {type(x).__name__}"
        )
    levels = list(x.values())
    for name, level in x.items():
        if not isinstance(level, torch.Tensor) or level.dim() != 4:
            shape = tuple(level.shape) if isinstance(level, torch.Tensor) else type(level).__name__
            raise ValueError(
                f"fasterrcnn_reshape_transform: level {name!r} must be a (B, C, h, w) tensor; got {shape}"
            )
    size = levels[-1].shape[-2:]
    return torch.cat(
        [F.interpolate(level.abs(), size=size, mode="bilinear", align_corners=False) for level in levels],
        dim=1,
    )
