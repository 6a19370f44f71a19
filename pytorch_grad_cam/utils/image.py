"""Images: overlays, preprocessing, and the numpy forms of the CAM scaling (1.5.x names).

Everything here takes and returns numpy arrays (images are the user-facing end of the library),
except :func:`preprocess_image`, which makes the model's input tensor.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pytorch_grad_cam import functional as CF

#: OpenCV's code for the jet colormap, the default of :func:`show_cam_on_image`.
COLORMAP_JET = 2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def jet_colormap() -> np.ndarray:
    """The 256-entry jet lookup table, ``(256, 3)`` uint8 RGB (blue for 0, red for 1)."""
    x = np.linspace(0.0, 1.0, 256)
    red = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return np.round(np.stack([red, green, blue], axis=1) * 255).astype(np.uint8)


def apply_colormap(mask: np.ndarray, colormap: int | np.ndarray = COLORMAP_JET) -> np.ndarray:
    """Colour a ``(H, W)`` map in [0, 1]: ``(H, W, 3)`` uint8 **RGB**.

    Args:
        mask: the map.
        colormap: ``COLORMAP_JET`` (OpenCV's code 2), or a ``(256, 3)`` uint8 RGB lookup table.
            Other OpenCV codes work when OpenCV is installed.
    """
    indices = np.uint8(255 * np.clip(mask, 0.0, 1.0))
    if isinstance(colormap, np.ndarray):
        if colormap.shape != (256, 3):
            raise ValueError(f"a colormap lookup table must have shape (256, 3); got {colormap.shape}")
        return colormap.astype(np.uint8)[indices]
    if colormap == COLORMAP_JET:
        return jet_colormap()[indices]
    try:
        import cv2
    except ImportError as error:
        raise ValueError(
            f"colormap {colormap!r} needs OpenCV; without it use COLORMAP_JET or a (256, 3) lookup table"
        ) from error
    return cv2.cvtColor(cv2.applyColorMap(indices, colormap), cv2.COLOR_BGR2RGB)


def show_cam_on_image(
    img: np.ndarray,
    mask: np.ndarray,
    use_rgb: bool = False,
    colormap: int | np.ndarray = COLORMAP_JET,
    image_weight: float = 0.5,
) -> np.ndarray:
    """Overlay a CAM heatmap on an image.

    Args:
        img: ``(H, W, 3)`` float image in [0, 1] (RGB or BGR, matching ``use_rgb``).
        mask: ``(H, W)`` CAM in [0, 1].
        use_rgb: return RGB; the default returns BGR, as OpenCV writes images (the seed's default).
        colormap: see :func:`apply_colormap`.
        image_weight: the image's share of the blend, in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8: ``(1 - image_weight) * heatmap + image_weight * img``, scaled so
        its maximum is 255.
    """
    img = np.asarray(img)
    mask = np.asarray(mask)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img must be an (H, W, 3) image; got shape {img.shape}")
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} must equal the image's (H, W) {img.shape[:2]}")
    if not np.issubdtype(img.dtype, np.floating) or img.min() < 0 or img.max() > 1:
        raise ValueError("img must be a float image with values in [0, 1] (divide a uint8 image by 255)")
    if not 0 <= image_weight <= 1:
        raise ValueError(f"image_weight must be in [0, 1]; got {image_weight}")
    heatmap = apply_colormap(mask, colormap)
    if not use_rgb:
        heatmap = heatmap[..., ::-1]
    blend = (1 - image_weight) * (np.float32(heatmap) / 255) + image_weight * np.float32(img)
    blend = blend / np.max(blend)
    return np.uint8(255 * blend)


def preprocess_image(
    img: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """An ``(H, W, 3)`` float image in [0, 1] as a normalised ``(1, 3, H, W)`` float32 tensor."""
    img = np.asarray(img)
    if img.ndim != 3:
        raise ValueError(f"img must be an (H, W, C) image; got shape {img.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ((tensor - mean_t) / std_t).unsqueeze(0)


def deprocess_image(img: np.ndarray) -> np.ndarray:
    """Standardise a gradient image for display: mean 0.5, std 0.1, clipped, as uint8."""
    img = np.asarray(img, dtype=np.float32)
    img = img - np.mean(img)
    img = img / (np.std(img) + 1e-5)
    img = np.clip(img * 0.1 + 0.5, 0, 1)
    return np.uint8(img * 255)


def scale_cam_image(cam: np.ndarray, target_size: Sequence[int] | None = None) -> np.ndarray:
    """Min-max scale each map of a batch and optionally resize it (the 1.5.x helper).

    Args:
        cam: ``(B, h, w)`` or ``(B, d, h, w)`` maps.
        target_size: ``(W, H)`` as OpenCV orders it (``(W, H, D)`` for volumes), or None.

    Returns:
        float32 maps, ``(B, H, W)`` when resized.
    """
    cams = CF.scale_to_unit(torch.as_tensor(np.asarray(cam, dtype=np.float32)))
    if target_size is not None:
        cams = CF.resize_cams(cams, tuple(reversed(tuple(target_size))))
    return cams.numpy()


def scale_accross_batch_and_channels(tensor: np.ndarray, target_size: Sequence[int]) -> np.ndarray:
    """:func:`scale_cam_image` on every channel of every image (the 1.5.x name, spelling kept).

    Args:
        tensor: ``(B, C, h, w)`` maps.
        target_size: ``(W, H)`` as OpenCV orders it.

    Returns:
        ``(B, C, H, W)`` float32 maps, each min-max scaled to [0, 1] and resized.
    """
    maps = np.asarray(tensor, dtype=np.float32)
    batch, channels = maps.shape[:2]
    scaled = scale_cam_image(maps.reshape(batch * channels, *maps.shape[2:]), target_size)
    return scaled.reshape(batch, channels, *scaled.shape[1:])
