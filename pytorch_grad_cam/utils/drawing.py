"""Pictures of the command line: the photo read and resized, the labelled grid of ``--method all``
(its tiles, labels and font), a detected box or a class mask outlined with its label, and JPEG writing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.utils.image import load_font

#: At most this many tiles a row in the grid.
GRID_COLUMNS = 6
#: Height of the grid's tiles (the photo and each CAM, scaled down): an overview, compact.
GRID_TILE_HEIGHT = 160


# -- the photo ---------------------------------------------------------------------------------


def load_photo(path: str) -> Image.Image:
    """An image file as an RGB PIL image.

    Raises:
        UsageError: the file is missing or is not an image.
    """
    file = Path(path)
    if not file.exists():
        raise UsageError(f"--image-path {path}: no such file")
    if not file.is_file():
        raise UsageError(f"--image-path {path}: not a file")
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise UsageError(f"--image-path {path}: cannot read it as an image ({error})") from None


def photo_array(photo: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``photo`` resized to ``size`` = (width, height): an ``(H, W, 3)`` float32 array in [0, 1]."""
    return np.asarray(photo.resize(size, Image.BILINEAR), dtype=np.float32) / 255.0


def display_size(photo: Image.Image, shorter_side: int) -> tuple[int, int]:
    """(width, height) of ``photo`` scaled so that its shorter side is ``shorter_side``."""
    scale = shorter_side / min(photo.size)
    return max(1, round(photo.width * scale)), max(1, round(photo.height * scale))


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(h, w)`` or ``(h, w, C)`` float array to ``size`` = (height, width)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    channels_last = tensor.dim() == 3
    tensor = tensor.permute(2, 0, 1)[None] if channels_last else tensor[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0]
    return (resized.permute(1, 2, 0) if channels_last else resized[0]).numpy()


def to_input_tensor(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` in [0, 1] to a normalised ``(1, 3, H, W)`` float32 tensor."""
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ((image - mean_t) / std_t).unsqueeze(0)


# -- the grid ---------------------------------------------------------------------------------


def make_grid(
    tiles: Sequence[np.ndarray], labels: Sequence[str], columns: int = GRID_COLUMNS, label_height: int = 24
) -> np.ndarray:
    """Labelled tiles in rows: each ``(H, W, 3)`` uint8 tile gets its label above it.

    Args:
        tiles: images of one size.
        labels: one per tile.
        columns: at most this many tiles a row; the rows are filled evenly.
        label_height: pixels above each tile for its label.

    Returns:
        ``(rows * (label_height + H), columns * W, 3)`` uint8, white where there is no tile.
    """
    if len(tiles) != len(labels) or not tiles:
        raise ValueError("make_grid needs one label per tile and at least one tile")
    height, width = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    columns = math.ceil(len(tiles) / rows)
    canvas = Image.new("RGB", (columns * width, rows * (height + label_height)), "white")
    draw = ImageDraw.Draw(canvas)
    font = load_font(max(10, label_height - 8))
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = (index % columns) * width, (index // columns) * (height + label_height)
        draw.text((x + 4, y + 3), label, fill="black", font=font)
        canvas.paste(Image.fromarray(tile), (x, y + label_height))
    return np.asarray(canvas)


def grid_tile(image: np.ndarray, height: int = GRID_TILE_HEIGHT) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture scaled to ``height`` pixels high (aspect kept, Lanczos)."""
    rows, columns = image.shape[:2]
    size = (max(1, round(columns * height / rows)), height)
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def save_jpg(path: Path, image: np.ndarray) -> Path:
    """Write a ``(H, W, 3)`` uint8 RGB image as a JPEG; returns ``path``."""
    Image.fromarray(image).save(path, quality=90)
    return path


# -- a detected box ------------------------------------------------------------------------------


def draw_box(image: np.ndarray, box: Sequence[float], text: str) -> np.ndarray:
    """``image`` with ``box`` outlined in white and ``text`` (its label) on black above its corner.

    The box is clipped to the image, so that a box reaching beyond it still shows.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (e.g. a CAM over the photo).
        box: ``(x1, y1, x2, y2)`` in the image's pixels.
        text: the label, e.g. ``"dog 0.87"``.

    Returns:
        a new ``(H, W, 3)`` uint8 RGB image.
    """
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    x1, x2 = (min(max(float(v), 0.0), width - 1.0) for v in box[0::2])
    y1, y2 = (min(max(float(v), 0.0), height - 1.0) for v in box[1::2])
    draw.rectangle([x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)], outline=(255, 255, 255), width=2)
    _label(draw, x1, max(0.0, y1 - 12), text)
    return np.asarray(picture)


def _label(draw: ImageDraw.ImageDraw, left: float, top: float, text: str, width: float | None = None) -> None:
    """``text`` in white on black, its top-left corner at ``(left, top)`` (moved left to end inside
    ``width`` pixels, when given)."""
    # word by word, a wide gap between: the default font's space is 2 pixels ("elephant0.03")
    gap = draw.textlength("n")
    words = text.split(" ")
    if width is not None:
        length = sum(draw.textlength(word) for word in words) + gap * (len(words) - 1)
        left = max(0.0, min(left, width - length - 1))
    starts = [left + sum(draw.textlength(word) + gap for word in words[:k]) for k in range(len(words))]
    x0, y0, _, y1 = draw.textbbox((left, top), text)
    right = starts[-1] + draw.textlength(words[-1])
    draw.rectangle([x0, y0, max(right, x0 + 1), y1], fill=(0, 0, 0))
    for start, word in zip(starts, words):
        draw.text((start, top), word, fill=(255, 255, 255))


def mask_outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` pixels of its edge (a pixel outside it, or the image's border).

    Args:
        mask: ``(H, W)`` bool.
        width: the outline's thickness in pixels.

    Returns:
        ``(H, W)`` bool, a subset of ``mask``.
    """
    inner = np.asarray(mask, dtype=bool)
    for _ in range(width):  # erode by one pixel (4-neighbours; outside the image counts as outside)
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
    return np.asarray(mask, dtype=bool) & ~inner


def draw_mask(image: np.ndarray, mask: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``mask``'s edge outlined in white and ``text`` on black just above its first
    pixel (the top row's leftmost; kept inside the image).

    Args:
        image: ``(H, W, 3)`` uint8 RGB (e.g. a CAM over the photo).
        mask: ``(h, w)`` bool, the class's pixels; resized to ``(H, W)`` by nearest neighbour.
        text: the label, e.g. ``"person 23%"``.

    Returns:
        a new ``(H, W, 3)`` uint8 RGB image (``image`` itself unchanged when the mask is empty).
    """
    height, width = image.shape[:2]
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (height, width):
        rows = np.minimum((np.arange(height) + 0.5) * mask.shape[0] / height, mask.shape[0] - 1).astype(int)
        columns = np.minimum((np.arange(width) + 0.5) * mask.shape[1] / width, mask.shape[1] - 1).astype(int)
        mask = mask[rows][:, columns]
    picture = np.array(image, dtype=np.uint8, copy=True)
    if not mask.any():
        return picture
    picture[mask_outline(mask)] = 255
    canvas = Image.fromarray(picture)
    rows, columns = np.nonzero(mask)  # row-major: the first is the top row's leftmost pixel
    _label(ImageDraw.Draw(canvas), float(columns[0]), max(0.0, float(rows[0]) - 12), text, width)
    return np.asarray(canvas)
