"""Files for the batch runner: finding images, decoding any image file to RGB, atomic writes, JSON lines.

Everything here is plain I/O with no torch, so it runs in DataLoader workers and is tested alone.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import threading
import uuid
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence, TextIO

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


class OutsidePath(Exception):
    """An output path the runner does not write: out of the output folder through a planted link, or
    with a file where a folder goes; the message says where."""


def folder_inside(root: Path, relative: str) -> Path:
    """``root / relative``'s folders, made where missing, never through a link out of ``root``.

    A link that stays inside ``root`` is followed; anything else is refused before a folder is made.

    Raises:
        OutsidePath: a component is ``..``, a symbolic link whose target is outside ``root`` (or
            dangling), or a file.
    """
    real_root = root.resolve()
    folder = root
    for part in Path(relative).parts:
        if part in ("..", "/") or Path(part).is_absolute():
            raise OutsidePath(f"{relative!r} is not a path inside the output folder")
        folder = folder / part
        if folder.is_symlink():
            try:
                target = folder.resolve(strict=True)
            except (OSError, RuntimeError):  # dangling, or a loop
                target = None
            if target is None or (target != real_root and real_root not in target.parents):
                raise OutsidePath(
                    f"{folder} is a symbolic link out of the output folder; nothing is written through it"
                )
        if not folder.is_dir():
            if folder.exists() or folder.is_symlink():
                raise OutsidePath(f"{folder} is a file where a folder goes; nothing is written there")
            folder.mkdir(exist_ok=True)
    return folder


def real_folder(path: Path) -> Path:
    """``path`` as a folder of its own: a symbolic link planted there is removed (not what it points to)."""
    if path.is_symlink():
        path.unlink()
    path.mkdir(exist_ok=True)
    return path


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
    except FileNotFoundError:
        raise BadImage("the file is gone (removed or renamed after the run listed it)") from None
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
        with open(tmp, "xb") as file:  # exclusive: never through a link planted under that name
            write(file)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_only(path: Path) -> TextIO:
    """``path`` opened to append UTF-8 text, refusing to follow a symbolic link planted under its name."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "a", encoding="utf-8")


def stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """The temporaries of :func:`atomic_write` under ``root`` (left by killed runs: remove them)."""
    found = []
    for folder, _, files in os.walk(root):
        found += [Path(folder) / name for name in files if _TEMPORARY.match(name)]
    return sorted(found)


def whole_file(path: Path) -> bool:
    """Whether an output file is complete: a regular file (not a link), a ``.npy`` holding all its
    data, a ``.jpg`` ending with the JPEG end marker. A truncated file is not."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return False
        with open(path, "rb") as file:
            if path.suffix == ".npy":
                version = np.lib.format.read_magic(file)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(file)
                return info.st_size == file.tell() + int(np.prod(shape)) * dtype.itemsize
            if path.suffix == ".jpg":
                file.seek(-2, os.SEEK_END)
                return file.read(2) == b"\xff\xd9"
    except (OSError, ValueError):
        return False
    return True


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
    """The records of a JSON-lines file with their lines; a missing file (or a link, folder, FIFO) has none.

    A line that is not a JSON object (the last line of a file whose writer was killed) is skipped
    with a warning.
    """
    if path.is_symlink() or not path.is_file():  # missing, a link planted there, a FIFO (would block)
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
