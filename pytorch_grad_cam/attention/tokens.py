"""The attention methods' token layout: :func:`~pytorch_grad_cam.utils.token_layout.square_patch_layout`.

Kept as an import path; the function lives with the other token layouts in
:mod:`pytorch_grad_cam.utils.token_layout`.
"""

from __future__ import annotations

from pytorch_grad_cam.utils.token_layout import MAX_SQUARE_PATCH_PREFIX as MAX_PREFIX_TOKENS
from pytorch_grad_cam.utils.token_layout import square_patch_layout as token_layout

__all__ = ["MAX_PREFIX_TOKENS", "token_layout"]
