"""Sobel edge magnitude: a CAM-shaped baseline that looks at the image only (1.5.x's ``sobel_cam``).

An edge map often resembles a saliency map; a CAM method that scores no better than it on the
metrics has not shown that it explains the model. Computed with torch the way 1.5.x computes it
with OpenCV (``cvtColor(RGB2GRAY)``, 3x3 ``Sobel`` with a reflected border, ``convertScaleAbs``,
``addWeighted``), so no OpenCV is needed. The gray conversion of 8-bit images uses OpenCV 4's
fixed-point weights; OpenCV 5 rounds some gray levels differently (by 1), which moves the edge
values of a few pixels by up to 2.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: OpenCV's fixed-point RGB to gray weights for 8-bit images (0.299, 0.587, 0.114 times 2**14).
_GRAY_WEIGHTS_Q14 = (4899, 9617, 1868)
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)


def _gray(rgb: torch.Tensor, integer: bool) -> torch.Tensor:
    """``(H, W, 3)`` RGB to ``(H, W)`` gray: rounded fixed point for 8-bit images, else float."""
    if integer:
        red, green, blue = (rgb[..., i].long() * w for i, w in enumerate(_GRAY_WEIGHTS_Q14))
        return ((red + green + blue + (1 << 13)) >> 14).double()
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _saturate_uint8(values: torch.Tensor) -> torch.Tensor:
    """Round half to even and clip to [0, 255], as OpenCV's ``saturate_cast<uchar>``."""
    return torch.round(values).clamp(0, 255)


def sobel_cam(img: np.ndarray) -> np.ndarray:
    """The mean of the absolute horizontal and vertical Sobel derivatives of an RGB image's gray.

    Args:
        img: ``(H, W, 3)`` RGB, uint8 (0-255) or float.

    Returns:
        ``(H, W)`` uint8: ``round(0.5 * sat(|d/dx|) + 0.5 * sat(|d/dy|))`` with ``sat`` rounding
        and clipping to 0-255 (float images are not rescaled first, as in 1.5.x).
    """
    array = np.asarray(img)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"img must be an (H, W, 3) RGB image; got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"img must hold numbers (uint8 or float); got {array.dtype}")
    rgb = torch.from_numpy(np.ascontiguousarray(array))
    gray = _gray(rgb.double(), integer=array.dtype == np.uint8)
    padded = F.pad(gray[None, None], (1, 1, 1, 1), mode="reflect")  # OpenCV's BORDER_REFLECT_101
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.T])[:, None]
    derivatives = F.conv2d(padded, kernels)[0]  # (2, H, W): d/dx, d/dy
    magnitude = _saturate_uint8(derivatives.abs())
    return _saturate_uint8(0.5 * magnitude[0] + 0.5 * magnitude[1]).to(torch.uint8).numpy()
