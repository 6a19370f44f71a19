"""Images given as flattened patches with their grid (HuggingFace SigLIP2's processor): explained as
the ``(B, C, h*p, w*p)`` image the patches were cut from.

SigLIP2 takes ``pixel_values`` ``(B, N, p*p*C)``: each row a ``p x p`` patch flattened rows, columns,
then channels, the first ``h*w`` rows the image's ``h x w`` patches row by row, the rest padding;
``spatial_shapes`` ``(B, 2)`` gives ``(h, w)`` and ``pixel_attention_mask`` ``(B, N)`` the real
rows. Drawn on those rows, a map would lie along the patches' pixels. So a call given such inputs
explains the image instead: ``pixel_values`` is replaced by the image the patches make, and the model
is run on that image cut into patches again (the padding dropped, the mask cut to the ``h*w`` real
patches: the model's output is the same). The maps are the image's, ``(B, h*p, w*p)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Hashable

import torch

#: The inputs read: the patches, their grid and the mask of real patches (HuggingFace's names).
PATCHES, GRID, MASK = "pixel_values", "spatial_shapes", "pixel_attention_mask"


@dataclasses.dataclass(frozen=True)
class PatchGrid:
    """How an image is cut into the rows of ``pixel_values``: ``grid`` ``(h, w)`` patches of
    ``patch x patch`` pixels and ``channels`` channels."""

    grid: tuple[int, int]
    patch: int
    channels: int

    def image(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, >= h*w, p*p*C)`` patches -> the ``(B, C, h*p, w*p)`` image (padding rows dropped)."""
        (h, w), p, c = self.grid, self.patch, self.channels
        cells = patches[:, : h * w].reshape(patches.shape[0], h, w, p, p, c)
        return cells.permute(0, 5, 1, 3, 2, 4).reshape(patches.shape[0], c, h * p, w * p)

    def patches(self, image: torch.Tensor) -> torch.Tensor:
        """The ``(B, C, h*p, w*p)`` image -> its ``(B, h*w, p*p*C)`` patches (:meth:`image` undone)."""
        (h, w), p, c = self.grid, self.patch, self.channels
        cells = image.reshape(image.shape[0], c, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
        return cells.reshape(image.shape[0], h * w, p * p * c)


def patch_grid(values: dict[Hashable, Any]) -> PatchGrid | None:
    """The cut of ``values``' ``pixel_values`` when they are flattened patches with a ``spatial_shapes``
    grid, else None.

    Raises:
        ValueError: the images of the batch have different grids, the grid holds more patches than
            ``pixel_values`` has rows, or a row is no ``p x p`` patch of 3 or 1 channels.
    """
    patches, grid = values.get(PATCHES), values.get(GRID)
    if not (isinstance(patches, torch.Tensor) and patches.is_floating_point() and patches.dim() == 3):
        return None
    if not (
        isinstance(grid, torch.Tensor)
        and not grid.is_floating_point()
        and grid.shape == (patches.shape[0], 2)
    ):
        return None
    shapes = {tuple(int(v) for v in row) for row in grid.tolist()}
    if len(shapes) != 1:
        raise ValueError(
            f"input_tensor['{GRID}'] gives the images different patch grids ({sorted(shapes)}); a call "
            "explains images of one grid: call once per grid (or resize the images alike)"
        )
    (h, w), (rows, width) = shapes.pop(), patches.shape[1:]
    if h < 1 or w < 1 or h * w > rows:
        raise ValueError(
            f"input_tensor['{GRID}'] gives {h}x{w} patches but input_tensor['{PATCHES}'] has {rows} rows"
        )
    for channels in (3, 1):
        side = math.isqrt(width // channels)
        if width % channels == 0 and side * side * channels == width:
            return PatchGrid((h, w), side, channels)
    raise ValueError(
        f"input_tensor['{PATCHES}'] rows of {width} values are no p x p patch of 3 or 1 channels; pass the "
        "processor's output as it is"
    )


def as_image_inputs(values: dict[Hashable, Any]) -> tuple[dict[Hashable, Any], dict[Hashable, Any]]:
    """``values`` with flattened patches replaced by their image (and the mask cut to the real
    patches), and the encoders that turn an image back into the model's input (empty without patches).

    Raises:
        ValueError: padding rows that the mask does not hide (no mask, or one not 0 there): the
            model's output reads them, and the image cut again has none.
    """
    cut = patch_grid(values)
    if cut is None:
        return values, {}
    h, w = cut.grid
    rows = values[PATCHES].shape[1]
    mask = values.get(MASK)
    masked = isinstance(mask, torch.Tensor) and mask.shape == values[PATCHES].shape[:2]
    if rows > h * w and not (masked and not bool(mask[:, h * w :].any())):
        # the model reads the padding rows: the image, cut again without them, would score otherwise
        how = "is absent" if mask is None else "is not 0 on them" if masked else "is no (B, N) mask"
        raise ValueError(
            f"input_tensor['{PATCHES}'] has {rows - h * w} padding rows after its {h}x{w} patches and "
            f"input_tensor['{MASK}'] {how}: the model's output reads them, which the image cannot "
            "give; pass the processor's pixel_attention_mask"
        )
    values = {**values, PATCHES: cut.image(values[PATCHES])}
    if masked:
        values[MASK] = mask[:, : h * w]
    return values, {PATCHES: cut.patches}
