"""GradCAM++."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++: positive gradients weighted by second-order coefficients.

    Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
    Networks", WACV 2018, https://arxiv.org/abs/1710.11063

    ``a_cij = G^2 / (2 G^2 + (sum_ij A_c) G^3 + 1e-6)`` (0 where ``G == 0``);
    ``w_c = sum_ij relu(G_cij) a_cij``; ``CAM = relu(sum_c w_c A_c)``.
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return CF.grad_cam_plusplus_weights(activations, grads)
