"""XGradCAM."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class XGradCAM(BaseCAM):
    """XGrad-CAM: gradients weighted by the normalised activations.

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
    BMVC 2020, https://arxiv.org/abs/2008.02312

    ``w_c = sum_ij G_cij A_cij / (sum_ij A_cij + 1e-7)``; ``CAM = relu(sum_c w_c A_c)``.
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return CF.xgrad_cam_weights(activations, grads)
