"""Helpers shared by the batch runner's tests (tests/test_batch_*.py): the generated photo folder with
its good, converted and bad files, the command line run as a process, and reading the output folder.

Not a test module (pytest does not collect it); ``tests/conftest.py`` builds the shared ``photos``
and ``single_run`` fixtures from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
#: The tiny models' file, for ``--model MODELS:tiny_cnn`` in a subprocess.
MODELS = Path(__file__).resolve().parent / "batch_models.py"
MANIFEST_NAME = "manifest.jsonl"

IMAGE_SIZE = 32
BATCH = 4

#: (relative name, kind) of the generated folder: 40 image files.
GOOD = (
    [f"a/{i}.jpg" for i in range(6)]
    + [f"a/b/{i}.webp" for i in range(4)]
    + ["a/UPPER.JPG", "a/UPPER2.JPEG"]
    + [f"img{i:02d}.png" for i in range(10)]
    + [f"c/{i}.bmp" for i in range(3)]
    + [f"c/{i}.tif" for i in range(3)]
)
CONVERTED = {
    "c/cmyk.jpg": "CMYK",
    "c/gray16.png": "I;16",
    "c/gray.png": "L",
    "c/palette.png": "P",
    "c/palette_transparent.png": "P",
    "c/rgba.png": "RGBA",
    "c/la.png": "LA",
}
BAD = {
    "bad/empty.jpg": "empty file (0 bytes)",
    "bad/truncated.jpg": "unreadable image",
    "bad/truncated.png": "unreadable image",
    "bad/not_an_image.png": "not an image file",
    "bad/garbage.webp": "not an image file",
}


def random_picture(rng: np.random.Generator) -> np.ndarray:
    """A small RGB picture: a plain background with a square of another colour somewhere."""
    height, width = (int(v) for v in rng.integers(24, 49, size=2))
    picture = np.empty((height, width, 3), dtype=np.uint8)
    picture[:] = rng.integers(0, 256, size=3)
    size = int(rng.integers(6, 14))
    top, left = int(rng.integers(0, height - size)), int(rng.integers(0, width - size))
    picture[top : top + size, left : left + size] = rng.integers(0, 256, size=3)
    return picture


def make_photo_dir(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in GOOD:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".png": "PNG"}
        Image.fromarray(random_picture(rng)).save(path, format=fmt[path.suffix.lower()])
    converted = root / "c"
    Image.fromarray(random_picture(rng)).convert("CMYK").save(converted / "cmyk.jpg")
    Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)).save(
        converted / "gray16.png"
    )
    Image.fromarray(random_picture(rng)).convert("L").save(converted / "gray.png")
    Image.fromarray(random_picture(rng)).convert("P").save(converted / "palette.png")
    palette = Image.fromarray(random_picture(rng)).convert("P")
    palette.info["transparency"] = 0
    palette.save(converted / "palette_transparent.png", transparency=0)
    picture = random_picture(rng)
    alpha = np.full(picture.shape[:2], 255, dtype=np.uint8)
    alpha[:, : picture.shape[1] // 2] = 0
    Image.fromarray(np.dstack([picture, alpha]), mode="RGBA").save(converted / "rgba.png")
    Image.fromarray(np.dstack([picture[..., 0], alpha]), mode="LA").save(converted / "la.png")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    full = root / "a" / "0.jpg"
    (bad / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    png = root / "img00.png"
    (bad / "truncated.png").write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    (bad / "not_an_image.png").write_text("this is a text file\n")
    (bad / "garbage.webp").write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)))
    (root / "notes.txt").write_text("not an image\n")
    Image.fromarray(random_picture(rng)).save(root / ".hidden.png")
    return root


def command(photos: Path, output_dir: Path, model: str = "tiny_cnn", layer: str = "features") -> list[str]:
    """The runner's arguments shared by the command-line tests."""
    return [
        "--image-dir",
        str(photos),
        "--output-dir",
        str(output_dir),
        "--model",
        f"{MODELS}:{model}",
        "--target-layer",
        layer,
        "--batch-size",
        str(BATCH),
        "--image-size",
        str(IMAGE_SIZE),
        "--save-overlay",
        "--html",
        "--per-page",
        "16",
    ]


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def run_cli(
    arguments: list[str], *, launcher: list[str] | None = None, **extra: str
) -> subprocess.CompletedProcess:
    prefix = launcher or [sys.executable]
    return subprocess.run(
        [*prefix, str(ROOT / "cam.py"), *arguments],  # cam.py hands --image-dir to the batch runner
        cwd=ROOT,
        env=environment(**extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative POSIX path -> bytes)."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


def manifest(folder: Path) -> list[dict]:
    """The records of ``folder``'s manifest, in order."""
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


class Items(Dataset):
    """12 items: (3, 32, 32) tensors, two (3, 24, 40) ones, one that raises, one that is not a tensor."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        if index == 3:
            raise RuntimeError("sensor glitch")
        if index == 6:
            return np.zeros((3, 8, 8)), {"id": index}
        generator = torch.Generator().manual_seed(index)
        shape = (3, 24, 40) if index in (5, 9) else (3, 32, 32)
        return torch.randn(shape, generator=generator), {"id": index, "label": index % 5}
