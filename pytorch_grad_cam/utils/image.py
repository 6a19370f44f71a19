"""Images: overlays, preprocessing, and the numpy forms of the CAM scaling (1.5.x names).

Everything here takes and returns numpy arrays (images are the user-facing end of the library),
except :func:`preprocess_image`, which makes the model's input tensor.
"""

from __future__ import annotations

import colorsys
import numbers
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from pytorch_grad_cam import functional as CF

#: OpenCV's code for the jet colormap, the default of :func:`show_cam_on_image` (as in 1.5.x).
COLORMAP_JET = cv2.COLORMAP_JET

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def jet_colormap() -> np.ndarray:
    """OpenCV's 256-entry jet lookup table, ``(256, 3)`` uint8 RGB (dark blue for 0, dark red for 1)."""
    table = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], COLORMAP_JET)
    return cv2.cvtColor(table, cv2.COLOR_BGR2RGB)[:, 0]


def apply_colormap(mask: np.ndarray, colormap: int | np.ndarray = COLORMAP_JET) -> np.ndarray:
    """Colour a ``(H, W)`` map in [0, 1]: ``(H, W, 3)`` uint8 **RGB**.

    The map is quantised to ``uint8(255 * mask)``, as 1.5.x does, and looked up.

    Args:
        mask: the map.
        colormap: an OpenCV colormap code (any ``cv2.COLORMAP_*``, applied by
            ``cv2.applyColorMap``; default ``COLORMAP_JET``), or a ``(256, 3)`` uint8 RGB lookup table.
    """
    indices = np.uint8(255 * np.clip(mask, 0.0, 1.0))
    if isinstance(colormap, np.ndarray):
        if colormap.shape != (256, 3):
            raise ValueError(f"a colormap lookup table must have shape (256, 3); got {colormap.shape}")
        return colormap.astype(np.uint8)[indices]
    if isinstance(colormap, bool) or not isinstance(colormap, numbers.Integral):
        raise TypeError(
            f"colormap must be a cv2.COLORMAP_* code or a (256, 3) lookup table; got {colormap!r}"
        )
    try:
        coloured = cv2.applyColorMap(np.ascontiguousarray(indices), int(colormap))
    except cv2.error as error:
        raise ValueError(f"colormap {colormap!r} is not an OpenCV colormap code (cv2.COLORMAP_*)") from error
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


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
        use_rgb: return RGB; the default returns BGR, as OpenCV writes images (the original API's default).
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


def load_font(size: int) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (its fixed bitmap font before Pillow 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def create_labels_legend(
    concept_scores: np.ndarray, labels: Mapping[int, str] | Sequence[str], top_k: int = 2
) -> list[str]:
    """Each concept's ``top_k`` classes as ``"name:score"`` lines (the 1.5.x legend text).

    Args:
        concept_scores: ``(K, classes)`` scores of each concept (e.g. softmax probabilities).
        labels: class names by index (a dict such as HuggingFace's ``id2label``, or a list); a
            name with commas keeps its first three parts.
        top_k: classes listed per concept, best first.

    Returns:
        ``K`` strings, the lines of each joined by newlines.
    """
    scores = np.asarray(concept_scores)
    if scores.ndim != 2:
        raise ValueError(f"concept_scores must be (K, classes); got shape {scores.shape}")
    legend = []
    for row in scores:
        best = np.argsort(-row, kind="stable")[:top_k]
        legend.append("\n".join(f"{','.join(labels[int(k)].split(',')[:3])}:{row[k]:.2f}" for k in best))
    return legend


def concept_colors(count: int) -> np.ndarray:
    """``count`` RGB colours in [0, 1], ``(count, 3)``, at evenly spaced hues of the rainbow."""
    return np.array([colorsys.hsv_to_rgb(index / max(count, 1), 1.0, 1.0) for index in range(count)])


def show_factorization_on_image(
    img: np.ndarray,
    explanations: np.ndarray,
    colors: Sequence[Sequence[float]] | np.ndarray | None = None,
    image_weight: float = 0.5,
    concept_labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Colour each pixel by the concept that explains it most, brighter where it explains more.

    Pixel ``p`` gets the colour of concept ``k = argmax_k explanations[k, p]`` at brightness
    ``explanations[k, p]`` (its HSV value replaced, as 1.5.x does), blended with the image.

    Args:
        img: ``(H, W, 3)`` RGB float image in [0, 1].
        explanations: ``(K, H, W)`` concept maps in [0, 1] (from DeepFeatureFactorization).
        colors: ``K`` RGB(A) colours in [0, 1]; default :func:`concept_colors`.
        image_weight: the image's share of the blend.
        concept_labels: ``K`` strings: a legend of the colours and these labels is drawn beside
            the image (the width doubles).

    Returns:
        ``(H, W, 3)`` uint8 (``(H, 2 W, 3)`` with a legend).
    """
    img = np.asarray(img, dtype=np.float32)
    maps = np.asarray(explanations, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or maps.ndim != 3 or maps.shape[1:] != img.shape[:2]:
        raise ValueError(
            "img must be (H, W, 3) and explanations (K, H, W) of the same H, W; "
            f"got {img.shape} and {maps.shape}"
        )
    count = maps.shape[0]
    if colors is None:
        palette = concept_colors(count)
    else:  # RGB or RGBA colours (matplotlib's), alpha ignored
        palette = np.array([np.asarray(colour, dtype=np.float32)[:3] for colour in colors]).reshape(-1, 3)
    if palette.shape[0] < count:
        raise ValueError(f"colors has {palette.shape[0]} colours for {count} concepts")
    peak = palette[:count].max(axis=1, keepdims=True)
    unit = np.divide(palette[:count], peak, out=np.zeros_like(palette[:count]), where=peak > 0)
    winner = maps.argmax(axis=0)
    strength = np.take_along_axis(maps, winner[None], axis=0)[0]
    mask = unit[winner] * strength[..., None]
    result = np.uint8(np.clip(img * image_weight + mask * (1 - image_weight), 0, 1) * 255)
    if concept_labels is None:
        return result
    if len(concept_labels) != count:
        raise ValueError(f"concept_labels has {len(concept_labels)} labels for {count} concepts")
    height, width = result.shape[:2]
    panel = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(panel)
    row = height / count
    font = load_font(max(8, int(min(row / 3, 14 * height / 256))))
    for index, label in enumerate(concept_labels):
        top = int(index * row)
        colour = tuple(int(round(255 * c)) for c in palette[index])
        draw.rectangle([4, top + 4, max(6, width // 8), top + max(6, int(row) - 4)], fill=colour)
        draw.multiline_text((max(10, width // 8 + 6), top + 4), label, fill="black", font=font)
    return np.hstack([result, np.asarray(panel)])


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
