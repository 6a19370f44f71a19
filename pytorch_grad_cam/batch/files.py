"""Files for the batch runner: finding images, decoding any image file to RGB, atomic writes, JSON lines.

Everything here is plain I/O with no torch, so it runs in DataLoader workers and is tested alone.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import uuid
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: The file name suffixes taken as images (compared case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: A temporary file of :func:`atomic_write` (``.<name>.<token>.tmp``; ``.<name>.tmp`` from older runs).
_TEMPORARY = re.compile(r"^\..+\.tmp$")
#: What makes each temporary name unique: this process's token (a new one after a fork) and a count.
_TOKENS: dict[int, str] = {}
_COUNT = itertools.count()
_TOKEN_LOCK = threading.Lock()

#: The EXIF orientations that swap width and height.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


class BadImage(Exception):
    """An image file that cannot be turned into an RGB image; the message is the reason."""


def find_images(root: str | os.PathLike, *, exclude: str | os.PathLike | None = None) -> list[str]:
    """The image files under ``root``, recursively, as sorted POSIX paths relative to ``root``.

    Args:
        root: the folder.
        exclude: a folder to leave out (the output folder, when it lies inside ``root``).

    Hidden files and folders (names starting with ``.``) are skipped; symbolic links to folders
    are not followed.
    """
    root = Path(root)
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (excluded is None or (here / d).resolve() != excluded)
        )
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append((here / name).relative_to(root).as_posix())
    return sorted(found)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block only loses the orientation
        return 1


def _to_uint8_gray(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float single-channel image as 8-bit grayscale."""
    values = np.asarray(image)
    if image.mode == "F":
        values = values.astype(np.float64)
        scaled = values * 255.0 if np.nanmax(values, initial=0.0) <= 1.0 else values
    else:  # I;16*, I: 16-bit samples (the 32-bit mode "I" is how Pillow holds 16-bit PNGs)
        scaled = values.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(np.round(scaled)), 0, 255).astype(np.uint8), mode="L")


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def load_rgb(
    path: str | os.PathLike, *, draft_size: int | None = None
) -> tuple[Image.Image, tuple[int, int], str | None]:
    """Decode an image file as 8-bit RGB, upright (EXIF orientation applied).

    Conversions: CMYK, YCbCr and other colour modes to RGB; grayscale, 1-bit and palette images
    to RGB; 16-bit and 32-bit grayscale scaled to 8 bits (``v / 257``); float images (in [0, 1]
    or [0, 255]) scaled; transparent images (RGBA, LA, palette with transparency) composited
    on white.

    Args:
        path: the file.
        draft_size: let a JPEG decode at a reduced scale whose shorter side is at least this
            many pixels (much faster for large photos). None decodes at full size.

    Returns:
        ``(image, (height, width), converted_from)``: the RGB image (smaller than the file when
        drafted), the file's own upright size, and the file's mode when it was not RGB (else None).

    Raises:
        BadImage: an empty, truncated or unreadable file, or one that is not an image; the message
            says which.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage("empty file (0 bytes)")
        with Image.open(path) as image:
            mode = image.mode
            width, height = image.size
            if _orientation(image) in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            if draft_size is not None and image.format == "JPEG" and mode in ("RGB", "L", "CMYK"):
                image.draft(mode, (draft_size, draft_size))
            image.load()
            upright = ImageOps.exif_transpose(image)
            if mode == "RGB":
                rgb = upright.convert("RGB")
            elif mode.startswith("I") or mode == "F":
                rgb = _to_uint8_gray(upright).convert("RGB")
            elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
                mode == "P" and "transparency" in upright.info
            ):
                rgb = _on_white(upright)
            else:
                rgb = upright.convert("RGB")
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image file that Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated, corrupt, unsupported mode
        raise BadImage(f"unreadable image ({error})") from None
    except Image.DecompressionBombError as error:
        raise BadImage(f"too large ({error})") from None
    return rgb, (height, width), None if mode == "RGB" else mode


def _unique_suffix() -> str:
    pid = os.getpid()
    with _TOKEN_LOCK:
        token = _TOKENS.setdefault(pid, f"{pid}-{uuid.uuid4().hex[:8]}")
        return f"{token}-{next(_COUNT)}"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file under a temporary name in its folder, then rename it into place.

    The temporary name (``.<name>.<pid>-<token>-<count>.tmp``) is unique per process and per write,
    so two writers of one file never rename each other's temporary away. A write that fails (a full
    disk, no permission) removes its temporary and leaves ``path`` as it was; a run killed in the
    middle leaves at most the temporary (:func:`stale_temporaries` finds them), never a half-written
    ``path``.
    """
    tmp = path.with_name(f".{path.name}.{_unique_suffix()}.tmp")
    try:
        with open(tmp, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """The temporaries of :func:`atomic_write` under ``root`` (left by killed runs: remove them)."""
    found = []
    for folder, _, files in os.walk(root):
        found += [Path(folder) / name for name in files if _TEMPORARY.match(name)]
    return sorted(found)


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda file: np.save(file, array, allow_pickle=False))


def save_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    """An ``(H, W, 3)`` uint8 RGB array as a JPEG, through :func:`atomic_write`."""
    image = Image.fromarray(rgb, mode="RGB")
    atomic_write(path, lambda file: image.save(file, format="JPEG", quality=quality))


def write_text(path: Path, text: str) -> None:
    """UTF-8 text through :func:`atomic_write`."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def read_jsonl(path: Path) -> Iterator[tuple[dict, str]]:
    """The records of a JSON-lines file with their lines; a missing file has none.

    A line that is not a JSON object (the last line of a file whose writer was killed) is skipped
    with a warning.
    """
    if not path.exists():
        return
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                warnings.warn(f"{path}:{number}: not a JSON object, skipped", stacklevel=2)
                continue
            yield record, line


def resize_rgb(image: Image.Image, size: Sequence[int]) -> np.ndarray:
    """An RGB image resized to ``(height, width)`` (bilinear, antialiased), as uint8 ``(H, W, 3)``."""
    height, width = int(size[0]), int(size[1])
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
