"""EigenCAM."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class EigenCAM(BaseCAM):
    """EigenCAM: the first principal component of the activations. No gradients, no class.

    Muhammad and Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
    IJCNN 2020, https://arxiv.org/abs/2008.00299

    ``CAM = relu(X v_1)`` with ``X`` the centred ``(h*w, C)`` activations and ``v_1`` their first
    right singular vector, its sign fixed so the largest-magnitude entry of ``X v_1`` is positive.
    Targets are ignored.
    """

    uses_gradients = False
    uses_targets = False
    always_eigen = True

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return torch.ones(activations.shape[:2], dtype=activations.dtype, device=activations.device)
