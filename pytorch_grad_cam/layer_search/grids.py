"""Grids aligned with the input: the misfit of an image's ``(h, w)`` or a video's ``(t, h, w)`` map,
and a video layer's token count split into prefix tokens and ``t x h x w`` grids.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

#: The most leading non-patch tokens tried when nothing says how many there are
#: (class + distillation + up to 8 registers fits).
MAX_PREFIX_TOKENS = 16


def grid_misfit(grid: Sequence[int], size: Sequence[int]) -> float | None:
    """How far a grid is from a downsampling of the input, or None when it is not one.

    A grid ``g`` is aligned with an input of spatial size ``S`` when some stride ``s`` gives
    every axis as ``floor(S_i / s)`` or ``ceil(S_i / s)`` (one stride for all axes: the input's
    aspect), and every axis has at least 2 cells.

    Args:
        grid: the cells per spatial axis, e.g. ``(7, 7)``.
        size: the input's spatial size, e.g. ``(224, 224)``.

    Returns:
        0.0 for an exact downsampling (``S_i / g_i`` equal on every axis), else the relative spread
        of the per-axis strides; None when the grid is not aligned.
    """
    if len(grid) != len(size) or any(g < 2 or g > s for g, s in zip(grid, size)):
        return None
    low = max(s / (g + 1) for g, s in zip(grid, size))
    high = min(s / (g - 1) for g, s in zip(grid, size))
    if not low < high:
        return None
    strides = [s / g for g, s in zip(grid, size)]
    return max(strides) / min(strides) - 1.0


def volume_misfit(grid: Sequence[int], size: Sequence[int]) -> float | None:
    """:func:`grid_misfit` of a video map ``(T', h, w)`` on a ``(T, H, W)`` input: the spatial axes
    share one stride (at least 2 cells each); time may be downsampled by any factor, to 1 frame."""
    if len(grid) != 3 or len(size) != 3 or not 1 <= grid[0] <= size[0]:
        return None
    return grid_misfit(grid[1:], size[1:])


@functools.lru_cache(maxsize=1024)
def volume_token_grids(
    tokens: int, size: tuple[int, int, int], prefix: int | None = None, carried: tuple[int, ...] | None = None
) -> tuple[int, tuple[tuple[int, int, int], ...], float] | None:
    """Split a token count on a ``(T, H, W)`` input into leading non-patch tokens and ``t x h x w``
    grids (:func:`volume_misfit`: time with its own stride, space with the input's aspect).

    Args:
        tokens: the token count ``N``.
        size: the input's ``(T, H, W)``.
        prefix: the known number of leading tokens, tried first.
        carried: a grid the layer returned with its tokens (MViT's blocks return ``(x, thw)``);
            it settles the split when it fits.

    Returns:
        ``(prefix, grids, misfit)``: the smallest misfit, then the fewest prefix tokens; ``grids``
        holds every ``(t, h, w)`` with that misfit (several when the count alone cannot tell, e.g.
        ``8*7*7 == 2*14*14``). None if none fits.
    """
    if carried is not None and len(carried) == 3:
        count, misfit = tokens - math.prod(carried), volume_misfit(carried, size)
        if 0 <= count <= MAX_PREFIX_TOKENS and misfit is not None:
            return count, (tuple(carried),), misfit
    known = (prefix,) if prefix is not None and 0 <= prefix < tokens else ()
    for counts in (known, range(0, min(MAX_PREFIX_TOKENS, tokens - 4) + 1)):
        best: tuple[int, list, float] | None = None
        for count in counts:
            cells = tokens - count
            for frames in range(1, min(size[0], cells) + 1):
                if cells % frames:
                    continue
                for rows in _divisors(cells // frames):
                    grid = (frames, rows, cells // frames // rows)
                    misfit = volume_misfit(grid, size)
                    if misfit is None or (best is not None and misfit > best[2] + 1e-12):
                        continue
                    if best is None or misfit < best[2] - 1e-12:
                        best = (count, [grid], misfit)
                    elif count == best[0]:
                        best[1].append(grid)
        if best is not None:
            return best[0], tuple(best[1]), best[2]
    return None


def _divisors(number: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(number) + 1) if number % d == 0]
    return small + [number // d for d in reversed(small) if d * d != number]


def carried_grid(output: Any) -> tuple[int, ...] | None:
    """A video grid a layer returned beside its tokens: the first element of a tuple/list output
    that is itself a tuple/list of 3 positive ints (MViT's blocks return ``(x, (t, h, w))``), else None."""
    if not isinstance(output, (tuple, list)):
        return None
    for item in output:
        if (
            isinstance(item, (tuple, list))
            and len(item) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in item)
        ):
            return tuple(item)
    return None
