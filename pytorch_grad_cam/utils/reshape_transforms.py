"""Reshape transforms: token outputs of transformers as ``(B, C, h, w)`` maps.

A reshape transform is applied alike to a target layer's output and to its gradient, so it should
only select, reshape and permute (no arithmetic on the values); :func:`fasterrcnn_reshape_transform`
is the exception that 1.5.x defines, meant for gradient-free methods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


def multiscale_reshape_transform(
    x: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    *,
    level: int = 0,
    mode: str = "bilinear",
    reduce: str = "concat",
) -> torch.Tensor:
    """Feature maps at several strides (an FPN's dict, a neck's list) as one ``(B, C, h, w)`` map.

    Every level is resized to the grid of level ``level`` and the levels are concatenated along
    the channels (``reduce="concat"``) or added (``reduce="sum"``, for levels of equal width).

    Why these defaults: level 0 of torchvision's FPNs, YOLO's necks and RT-DETR's encoder is the
    finest (stride 4 or 8), so the map keeps the detail small boxes need; bilinear resizing is
    linear, so a level's gradient is resized exactly as its activations are and a gradient
    method's channel weights (mean gradients) are barely changed by it; concatenation keeps the
    channels of each level apart (channel ``c`` of one level and of another are unrelated
    features, which a sum would add together), and matches
    :class:`~pytorch_grad_cam.ablation_layer.AblationLayerMultiScale`'s channel numbering. Unlike
    :func:`fasterrcnn_reshape_transform` no absolute value is taken, so gradients keep their sign.
    Use ``functools.partial(multiscale_reshape_transform, level=-1)`` for the coarsest grid.

    Args:
        x: a mapping of level name to ``(B, C_l, h_l, w_l)``, or a list/tuple of them.
        level: the level whose grid the others are resized to (index in the order given).
        mode: the ``torch.nn.functional.interpolate`` mode (``"bilinear"``, ``"nearest"``, ...).
        reduce: ``"concat"`` or ``"sum"``.

    Returns:
        ``(B, sum_l C_l, h, w)`` (concat) or ``(B, C, h, w)`` (sum).
    """
    if isinstance(x, Mapping):
        named = list(x.items())
    elif isinstance(x, (list, tuple)):
        named = list(enumerate(x))
    else:
        named = []
    if not named:
        raise ValueError(
            "multiscale_reshape_transform expects a non-empty dict or list of (B, C, h, w) feature maps; "
            f"got {type(x).__name__}"
        )
    for name, value in named:
        if not isinstance(value, torch.Tensor) or value.dim() != 4:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"multiscale_reshape_transform: level {name!r} is not (B, C, h, w): {shape}")
    if reduce not in ("concat", "sum"):
        raise ValueError(f"reduce must be 'concat' or 'sum'; got {reduce!r}")
    levels = [value for _, value in named]
    size = levels[level].shape[-2:]
    extra = {} if mode in ("nearest", "area", "nearest-exact") else {"align_corners": False}
    resized = [
        value if value.shape[-2:] == size else F.interpolate(value, size=size, mode=mode, **extra)
        for value in levels
    ]
    if reduce == "concat":
        return torch.cat(resized, dim=1)
    widths = {value.shape[1] for value in resized}
    if len(widths) != 1:
        raise ValueError(f"reduce='sum' needs levels of equal channel counts; got {sorted(widths)}")
    return torch.stack(resized).sum(dim=0)


def token_grid(tokens: int, image_size: Sequence[int]) -> tuple[int, int]:
    """The ``(h, w)`` with ``h * w == tokens`` whose aspect ratio is closest to the image's.

    A backbone of stride ``s`` turns an ``H x W`` image into a ``ceil(H / s) x ceil(W / s)`` grid:
    its aspect ratio is the image's, up to rounding, which picks the factor pair.
    """
    height, width = (float(side) for side in image_size)
    pairs = [(h, tokens // h) for h in range(1, tokens + 1) if tokens % h == 0]
    if not pairs:
        raise ValueError(f"cannot lay out {tokens} tokens on a grid")
    return min(pairs, key=lambda pair: abs(math.log(pair[0] / pair[1]) - math.log(height / width)))


def token_grid_reshape_transform(tensor: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """Tokens ``(B, h*w, C)`` of a detection transformer's encoder (DETR) to ``(B, C, h, w)``.

    The encoder of DETR and Conditional DETR flattens the backbone's ``h x w`` feature map into
    tokens (no class token); :func:`token_grid` recovers ``h, w`` from the input image's size.
    Bind the size: ``functools.partial(token_grid_reshape_transform, image_size=(H, W))``.

    Args:
        tensor: ``(B, h*w, C)``.
        image_size: ``(H, W)`` of the input image.

    Returns:
        ``(B, C, h, w)``.
    """
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"token_grid_reshape_transform expects (B, tokens, C); got {shape}")
    height, width = token_grid(tensor.shape[1], image_size)
    return tensor.reshape(tensor.shape[0], height, width, tensor.shape[2]).permute(0, 3, 1, 2)
