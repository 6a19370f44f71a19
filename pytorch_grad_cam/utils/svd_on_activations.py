"""The 1.5.x names of the principal-component projections (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
import torch

from pytorch_grad_cam import functional as CF


def _as_activations(activation_batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(activation_batch, torch.Tensor):
        return activation_batch.detach().float()
    return torch.as_tensor(np.asarray(activation_batch, dtype=np.float32))


def get_2d_projection(activation_batch: np.ndarray | torch.Tensor) -> np.ndarray:
    """Project ``(B, C, *s)`` activations on their first principal component: ``(B, *s)`` float32.

    See :func:`pytorch_grad_cam.functional.first_principal_component` (this is its numpy face).
    """
    return CF.first_principal_component(_as_activations(activation_batch)).cpu().numpy()


def get_2d_projection_with_sign_correction(activation_batch: np.ndarray | torch.Tensor) -> np.ndarray:
    """The first principal component, flipped so that its largest magnitude is positive.

    Seg-Eigen-CAM's sign correction (its Eq. 13: flip the map when ``|min| > |max|``). Every
    projection of this library is already signed that way, so this equals
    :func:`get_2d_projection`; the 1.5.x name is kept.
    """
    return get_2d_projection(activation_batch)


def get_2d_projection_kernel(
    activation_batch: np.ndarray | torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None
) -> np.ndarray:
    """Project ``(B, C, *s)`` activations on their first kernel principal component: ``(B, *s)``.

    See :func:`pytorch_grad_cam.functional.kernel_principal_component` (this is its numpy face);
    ``kernel`` is one of ``linear``, ``poly``, ``rbf``, ``sigmoid``, ``cosine``.
    """
    activations = _as_activations(activation_batch)
    return CF.kernel_principal_component(activations, kernel, gamma).cpu().numpy()
