"""Layouts of layer outputs: which axes of a tensor are the channels and the spatial grid.

A CAM needs a layer's output as ``(B, C, *grid)``. Layers give that directly (convolutions),
channels last (``(B, h, w, C)``: Swin, the channel-last blocks of ConvNeXt), or as tokens
(``(B, P + h*w, C)``: ViT with ``P`` leading class/distillation/register tokens; ``P = 0`` for
MLP-Mixer and pyramid stages), possibly inside a tuple or a HuggingFace ``ModelOutput``.

:func:`read_layout` finds the reading of an output whose grid is aligned with the input image
(:func:`grid_misfit`), and :class:`LayoutTransform` is the matching ``reshape_transform`` (it only
selects, reshapes and permutes, so it applies alike to outputs and gradients).

Two readings of a token count, for two uses:

- :func:`token_grid`, best fit: any ``h x w`` grid that is a downsampling of the input (floor or
  ceil of one stride per axis), the smallest misfit winning; for a layer's output, whose tokens may
  come from overlapping or padded patches (pyramid stages, convolutional stems).
- :func:`square_patch_layout`, exact tiling: the grid must cut the image into whole square patches
  (``H / h == W / w``, an integer), the fewest prefix tokens winning; for a ViT's attention, whose
  sequence is the patch embedding's (the attention methods use it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.loaded import loaded_class
from pytorch_grad_cam._core.outputs import tensors_in
from pytorch_grad_cam.layer_search.grids import (
    MAX_PREFIX_TOKENS,
    carried_grid,
    grid_misfit,
    volume_misfit,
    volume_token_grids,
)

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
TOKENS = "tokens"


#: The most prefix tokens :func:`square_patch_layout` tries when the count is not given
#: (class + distillation + 8 registers).
MAX_SQUARE_PATCH_PREFIX = 10


def square_patch_layout(
    num_tokens: int, image_size: Sequence[int], prefix_tokens: int | None = None
) -> tuple[int, tuple[int, int]]:
    """Split ``num_tokens`` into prefix tokens (class, distillation, registers) and an ``h x w`` grid
    of whole square patches tiling the image (exact tiling; :func:`token_grid` is the best fit).

    The grid must tile the image with square patches: ``H / h == W / w``, an integer. With
    ``prefix_tokens`` None, the smallest prefix count (0 to :data:`MAX_SQUARE_PATCH_PREFIX`) that
    leaves such a grid is taken; e.g. 197 tokens on 224x224 give 1 + 14x14, 201 give 5 + 14x14.

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
    candidates = range(MAX_SQUARE_PATCH_PREFIX + 1) if prefix_tokens is None else (prefix_tokens,)
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


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one tensor of a layer's output maps to ``(B, C, *grid)``.

    Attributes:
        kind: ``"channels_first"`` ``(B, C, *grid)``, ``"channels_last"`` ``(B, h, w, C)`` or
            ``"tokens"`` ``(B, prefix + h*w, C)``.
        grid: the spatial cells, e.g. ``(14, 14)``.
        channels: C.
        prefix: leading non-patch tokens dropped (tokens only).
        element: which tensor of the output (its index in :func:`~pytorch_grad_cam._core.outputs.tensors_in`
            order; 0 for a plain tensor).
        misfit: see :func:`grid_misfit`.
        ambiguous: another reading of the same tensor fits as well (e.g. ``(B, 8, 8, 8)``, or video
            tokens that split into several ``t x h x w`` grids).
        alternatives: for ambiguous video tokens, every grid that fits as well (``grid`` among them).
    """

    kind: str
    grid: tuple[int, ...]
    channels: int
    prefix: int = 0
    element: int = 0
    misfit: float = 0.0
    ambiguous: bool = False
    alternatives: tuple[tuple[int, ...], ...] = ()

    def describe(self) -> str:
        """E.g. ``tokens (1 prefix + 14x14)``."""
        grid = "x".join(str(g) for g in self.grid)
        if self.kind == TOKENS:
            return f"tokens ({self.prefix} prefix + {grid})"
        return f"{self.kind.replace('_', '-')} {grid}"


def _factor_grids(count: int, size: Sequence[int]) -> tuple[tuple[int, int], float] | None:
    """The ``h x w = count`` grid closest to the input's aspect, and its misfit."""
    return _factor_grids_of(int(count), tuple(int(s) for s in size))


@functools.lru_cache(maxsize=1024)
def _factor_grids_of(count: int, size: tuple[int, ...]) -> tuple[tuple[int, int], float] | None:
    # remembered: the layer search reads every module's tokens, most of one count (a ViT's blocks)
    best = None
    for rows in range(2, count // 2 + 1):
        if count % rows:
            continue
        misfit = grid_misfit((rows, count // rows), size)
        if misfit is not None and (best is None or misfit < best[1]):
            best = ((rows, count // rows), misfit)
    return best


def token_grid(
    tokens: int, size: Sequence[int], prefix: int | None = None
) -> tuple[int, tuple[int, int], float] | None:
    """Split a token count into leading non-patch tokens and an ``h x w`` patch grid.

    Args:
        tokens: the token count ``N``.
        size: the input's ``(H, W)``.
        prefix: the known number of leading tokens (e.g. timm's ``num_prefix_tokens``), tried
            first; None tries 0 to :data:`MAX_PREFIX_TOKENS`.

    Returns:
        ``(prefix, (h, w), misfit)``: with ``prefix`` given and fitting, that one; otherwise the
        reading with the smallest misfit, then the fewest prefix tokens. None if none fits.
    """
    if len(size) != 2:
        return None
    if prefix is not None and 0 <= prefix < tokens:
        fit = _factor_grids(tokens - prefix, size)
        if fit is not None:
            return prefix, fit[0], fit[1]
    best = None
    for count in range(0, min(MAX_PREFIX_TOKENS, tokens - 4) + 1):
        fit = _factor_grids(tokens - count, size)
        if fit is not None and (best is None or fit[1] < best[2] - 1e-12):
            best = (count, fit[0], fit[1])
    return best


def _misfit(grid: Sequence[int], size: Sequence[int]) -> float | None:
    return volume_misfit(grid, size) if len(size) == 3 else grid_misfit(grid, size)


def _volume_token_readings(
    tensor: torch.Tensor, size: Sequence[int], prefix: int | None, output: Any
) -> list[Layout]:
    split = volume_token_grids(tensor.shape[1], tuple(size), prefix, carried_grid(output))
    if split is None:
        return []
    count, grids, misfit = split
    grid = max(grids)  # the most frames; a tie is settled by the search (search._settled_tokens)
    ambiguous = len(grids) > 1
    return [
        Layout(
            TOKENS, grid, tensor.shape[2], prefix=count, misfit=misfit, ambiguous=ambiguous,
            alternatives=grids if ambiguous else (),
        )
    ]  # fmt: skip


def _tensor_readings(
    tensor: torch.Tensor, size: Sequence[int], prefix: int | None, output: Any = None
) -> list[Layout]:
    spatial = len(size)
    readings = []
    if tensor.dim() == 2 + spatial:
        misfit = _misfit(tuple(tensor.shape[2:]), size)
        if misfit is not None:
            readings.append(Layout(CHANNELS_FIRST, tuple(tensor.shape[2:]), tensor.shape[1], misfit=misfit))
        if spatial in (2, 3):
            misfit = _misfit(tuple(tensor.shape[1:-1]), size)
            if misfit is not None:
                readings.append(
                    Layout(CHANNELS_LAST, tuple(tensor.shape[1:-1]), tensor.shape[-1], misfit=misfit)
                )
    elif spatial == 2 and tensor.dim() == 3:
        split = token_grid(tensor.shape[1], size, prefix)
        if split is not None:
            readings.append(Layout(TOKENS, split[1], tensor.shape[2], prefix=split[0], misfit=split[2]))
    elif spatial == 3 and tensor.dim() == 3:
        readings += _volume_token_readings(tensor, size, prefix, output)
    return readings


def read_layout(output: Any, input_shape: Sequence[int], prefix: int | None = None) -> Layout | None:
    """The reading of a layer's output as a map aligned with the input, or None.

    The first tensor of the output (in :func:`~pytorch_grad_cam._core.outputs.tensors_in` order:
    a tuple's first element, a ``ModelOutput``'s first field) that has the batch size and a
    floating dtype and reads as an aligned grid is used. Of its readings the one with the smallest
    :func:`grid_misfit` wins; a tie between channels-first and channels-last sets ``ambiguous``
    (the channels-first reading is returned).

    Args:
        output: the layer's output (a tensor, a tuple/list/dict of them, a ``ModelOutput``).
        input_shape: the input's shape ``(B, C_in, *S)``.
        prefix: known leading non-patch tokens, see :func:`token_grid`.
    """
    batch, size = input_shape[0], tuple(input_shape[2:])
    for index, tensor in enumerate(tensors_in(output)):
        if tensor.dim() < 3 or tensor.shape[0] != batch or not tensor.is_floating_point():
            continue
        readings = sorted(_tensor_readings(tensor, size, prefix, output), key=lambda r: r.misfit)
        if not readings:
            continue
        best = readings[0]
        tie = len(readings) > 1 and abs(readings[1].misfit - best.misfit) < 1e-9
        return dataclasses.replace(best, element=index, ambiguous=tie or best.ambiguous)
    return None


@dataclasses.dataclass(frozen=True)
class LayoutTransform:
    """A ``reshape_transform`` for a :class:`Layout`: the layer's output to ``(B, C, *grid)``.

    It selects the layout's tensor from a tuple/``ModelOutput``, drops the prefix tokens, and
    reshapes/permutes; nothing else, so gradients map the same way.
    """

    layout: Layout

    def __call__(self, output: Any) -> torch.Tensor:
        tensor = output if isinstance(output, torch.Tensor) else tensors_in(output)[self.layout.element]
        layout = self.layout
        if layout.kind == CHANNELS_FIRST:
            return tensor
        if layout.kind == CHANNELS_LAST:
            if tensor.dim() != 2 + len(layout.grid):
                raise ValueError(
                    f"expected (B, *grid, C) channels-last features with a {len(layout.grid)}-D grid; got "
                    f"shape {tuple(tensor.shape)}"
                )
            return tensor.movedim(-1, 1)
        if tensor.dim() != 3 or tensor.shape[1] != layout.prefix + math.prod(layout.grid):
            cells = "*".join(str(g) for g in layout.grid)
            raise ValueError(
                f"expected (B, {layout.prefix} + {cells}, C) tokens; got shape {tuple(tensor.shape)} "
                "(the automatic layout was found for another input size)"
            )
        patches = tensor[:, layout.prefix :, :]
        return patches.reshape(tensor.shape[0], *layout.grid, tensor.shape[2]).movedim(-1, 1)

    def __repr__(self) -> str:
        return f"LayoutTransform({self.layout.describe()})"


#: :func:`carries_spatial_information` checks these channels' spread before the others' on a grid of
#: fewer than ``_LARGE_GRID`` cells (on a larger one, per-channel reductions are as fast as whole-map ones).
_FIRST_CHANNELS, _LARGE_GRID = 8, 256


def carries_spatial_information(maps: torch.Tensor) -> bool:
    """Whether a ``(B, C, *grid)`` map differs between grid positions anywhere.

    A pooled map broadcast or upsampled to a grid (torchvision AlexNet's ``avgpool`` copying a
    1x1 map to 6x6) has every position equal per image and channel: it passes the grid rule of
    :func:`grid_misfit` but holds no spatial information, and any CAM of it is blank or constant.
    Positions count as equal when they differ by at most ``1e-6`` of the map's largest magnitude
    (an all-zero map carries none).

    The search calls this on every module's output during its forward, so it only reduces: no
    tensor the size of the map (an ``abs``, an ``isfinite`` mask, a copy of a permuted view) is
    made; the largest is the ``(B, C)`` spreads. A non-finite value makes the map's maximum or
    minimum non-finite (NaN propagates through both), and such a map counts as carrying
    information (the diagnostics report non-finite maps).

    Args:
        maps: ``(B, C, *grid)``, any strides (a channels-last or token map permuted to this shape).
    """
    maps = maps.detach()
    grid = tuple(range(2, maps.dim()))
    if maps.numel() == 0 or not grid:
        return False
    if math.prod(maps.shape[2:]) >= _LARGE_GRID:
        # each (image, channel)'s extremes, two passes: the map's extremes follow from them
        low, high = maps.amin(dim=grid), maps.amax(dim=grid)
        least, most = float(low.min()), float(high.max())
        spreads: Iterator[torch.Tensor] = iter((high - low,))
    else:
        # on a small grid per-channel reductions cost several times whole-map ones: the map's
        # extremes first, then the first channels' spreads, the others' only if those do not vary
        least, most = float(maps.amin()), float(maps.amax())
        parts = (maps[:, :_FIRST_CHANNELS], maps[:, _FIRST_CHANNELS:])
        spreads = (part.amax(dim=grid) - part.amin(dim=grid) for part in parts if part.numel())
    # a NaN or an infinity is an extreme: such a map is not this rule's to judge (the diagnostics
    # report non-finite maps)
    if not (math.isfinite(least) and math.isfinite(most)):
        return True
    scale = max(-least, most)  # the largest magnitude
    if scale == 0.0:
        return False
    return any(bool((spread > 1e-6 * scale).any()) for spread in spreads)


def tokens_to_map(tokens: torch.Tensor, input_size: Sequence[int], prefix: int | None = None) -> torch.Tensor:
    """ViT-style tokens ``(B, P + h*w, C)`` as a ``(B, C, h, w)`` map, ``P`` and ``h x w`` found.

    Args:
        tokens: ``(B, N, C)``.
        input_size: the input image's ``(H, W)``; the grid follows its aspect.
        prefix: the number of leading non-patch tokens if known (else found, see :func:`token_grid`).

    Raises:
        ValueError: no split of the tokens gives a grid with the input's aspect.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"tokens must be a (B, N, C) tensor; got {getattr(tokens, 'shape', type(tokens))}")
    split = token_grid(tokens.shape[1], tuple(input_size), prefix)
    if split is None:
        raise ValueError(
            f"{tokens.shape[1]} tokens cannot be {'' if prefix is None else f'{prefix} prefix tokens + '}"
            f"a patch grid with the aspect of a {tuple(input_size)} input"
        )
    return LayoutTransform(Layout(TOKENS, split[1], tokens.shape[2], prefix=split[0]))(tokens)


def known_prefix_tokens(model: nn.Module) -> tuple[int, str] | None:
    """The leading non-patch token count a known ViT class states, and where it was read.

    Read from (``isinstance``-checked, never from arbitrary attributes): timm's
    ``VisionTransformer``/``Eva``/``Beit`` (``num_prefix_tokens``), torchvision's
    ``VisionTransformer`` (one class token), HuggingFace ``PreTrainedModel`` configs with
    ``num_register_tokens`` (DINOv2 with registers: 1 + registers). Only classes whose module is
    already imported are checked; nothing is imported here.
    """
    classes: list[tuple[type, str]] = []
    for module_name, class_name in (
        ("timm.models.vision_transformer", "VisionTransformer"),
        ("timm.models.eva", "Eva"),
        ("timm.models.beit", "Beit"),
    ):
        found = loaded_class(module_name, class_name)
        if found is not None:
            classes.append((found, f"timm {class_name}.num_prefix_tokens"))
    torchvision_vit = loaded_class("torchvision.models.vision_transformer", "VisionTransformer")
    pretrained = loaded_class("transformers.modeling_utils", "PreTrainedModel")
    for module in model.modules():
        for cls, source in classes:
            if isinstance(module, cls):
                count = module.num_prefix_tokens
                if isinstance(count, int):
                    return count, source
        if torchvision_vit is not None and isinstance(module, torchvision_vit):
            return 1, "torchvision VisionTransformer (one class token)"
        if pretrained is not None and isinstance(module, pretrained):
            registers = module.config.to_dict().get("num_register_tokens")
            if isinstance(registers, int) and registers > 0:
                return 1 + registers, "HuggingFace config.num_register_tokens (+ the class token)"
            return None
    return None
