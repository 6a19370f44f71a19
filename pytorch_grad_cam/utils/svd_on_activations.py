"""The 1.5.x name of the first-principal-component projection."""

from __future__ import annotations

import numpy as np
import torch

from pytorch_grad_cam import functional as CF


def get_2d_projection(activation_batch: np.ndarray | torch.Tensor) -> np.ndarray:
    """Project ``(B, C, *s)`` activations on their first principal component: ``(B, *s)`` float32.

    See :func:`pytorch_grad_cam.functional.first_principal_component` (this is its numpy face).
    """
    if isinstance(activation_batch, torch.Tensor):
        activations = activation_batch.detach().float()
    else:
        activations = torch.as_tensor(np.asarray(activation_batch, dtype=np.float32))
    return CF.first_principal_component(activations).cpu().numpy()
