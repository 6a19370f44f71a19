"""Pictures for the tutorials: enlarged tiles, labelled grids, and the record of what a run wrote.

Each tutorial writes its pictures into one folder (``docs/tutorials/img`` by default) and records
there, in ``pictures.json``, a fingerprint of each picture's pixels and the command that made it:
the test suite checks the committed pictures against that record and reruns every tutorial in its
quick mode.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
PICTURES = HERE / "img"
RECORD = "pictures.json"


def arguments(description: str) -> argparse.Namespace:
    """The options every tutorial takes: ``--quick`` (a fast run for the tests) and ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few seconds: less training, fewer images")
    parser.add_argument("--out", type=Path, default=PICTURES, help="where the pictures go")
    return parser.parse_args()


def fingerprint(path: Path) -> str:
    """sha256 of the picture's decoded RGB pixels and size (not of the file's bytes); of the text
    for a Markdown file (a table a tutorial wrote)."""
    if path.suffix == ".md":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB"))
    return hashlib.sha256(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()


def record(paths: Sequence[Path], tutorial: str, quick: bool) -> None:
    """Add the pictures to the folder's ``pictures.json`` (one entry per file name)."""
    for path in paths:
        folder = path.parent
        book = folder / RECORD
        entries = json.loads(book.read_text()) if book.exists() else {}
        entries[path.name] = {"tutorial": tutorial, "quick": quick, "pixels_sha256": fingerprint(path)}
        book.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")
        print(f"wrote {path}")


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """A generated image ``(3, H, W)`` as float32 RGB ``(H, W, 3)`` in [0, 1], for the overlays."""
    array = image.permute(1, 2, 0).numpy()
    return np.clip((array + 2.0) / 4.0, 0, 1).astype(np.float32)


def tile(array: np.ndarray, scale: int = 4, box: Sequence[int] | None = None) -> Image.Image:
    """An ``(H, W, 3)`` uint8 or [0, 1] float picture, enlarged ``scale`` times (nearest), with an
    optional ``y0, x0, y1, x1`` box drawn in white."""
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    picture = Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    if box is not None:
        y0, x0, y1, x1 = (int(v) * scale for v in box)
        ImageDraw.Draw(picture).rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=2)
    return picture


def grid(
    rows: Sequence[Sequence[Image.Image]],
    column_titles: Sequence[str],
    path: Path,
    row_titles: Sequence[str] | None = None,
) -> Path:
    """Save the tiles in a labelled grid (titles above the columns, optionally left of the rows)."""
    width, height = rows[0][0].size
    left = 0 if row_titles is None else 130
    top = 16
    canvas = Image.new("RGB", (left + width * len(rows[0]), top + height * len(rows)), "white")
    pen = ImageDraw.Draw(canvas)
    for column, title in enumerate(column_titles):
        pen.text((left + column * width + 3, 2), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        if row_titles is not None:
            pen.text((3, top + r * height + height // 2 - 6), row_titles[r], fill=(0, 0, 0))
        for column, picture in enumerate(row):
            canvas.paste(picture, (left + column * width, top + r * height))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        canvas.save(path, quality=85)
    else:
        canvas.save(path, optimize=True)
    return path


def energy_in_box(cam: np.ndarray, box: Sequence[int]) -> float:
    """The share of the map's sum inside the ``y0, x0, y1, x1`` box (a uniform map: 1/16)."""
    y0, x0, y1, x1 = (int(v) for v in box)
    total = float(cam.sum())
    return float(cam[y0:y1, x0:x1].sum()) / total if total > 0 else 0.0
