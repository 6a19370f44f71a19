"""Shared helpers of the usage examples: reading a photo, saving an overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load_rgb(image_path: str | None, size: int) -> np.ndarray:
    """An ``(size, size, 3)`` float32 RGB image in [0, 1]: the file, or scikit-image's coffee photo (CC0)."""
    if image_path is None:
        try:
            from skimage import data
        except ImportError as error:
            raise SystemExit("pass --image-path (or install scikit-image for its example photo)") from error
        image = Image.fromarray(data.coffee())
    else:
        path = Path(image_path)
        if not path.is_file():
            raise SystemExit(f"--image-path {image_path}: no such file")
        image = Image.open(path).convert("RGB")
    image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0


def save_rgb(array: np.ndarray, path: str) -> None:
    """Save an ``(H, W, 3)`` uint8 RGB array."""
    Image.fromarray(array).save(path)


def load_weights(path: str) -> dict:
    """A ``--weights`` state_dict, read without running code: a pickle holding more than tensors ends
    the example with one line saying so (never with advice to load it unsafely)."""
    from pytorch_grad_cam.cli.models import read_state_dict
    from pytorch_grad_cam.errors import UsageError

    try:
        return read_state_dict(path)
    except UsageError as error:
        raise SystemExit(str(error)) from None
