"""GradCAM."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class GradCAM(BaseCAM):
    """Grad-CAM: activations weighted by their mean gradient.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017, https://arxiv.org/abs/1610.02391

    ``w_c = mean_ij dY/dA_cij``; ``CAM = relu(sum_c w_c A_c)``.
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return CF.grad_cam_weights(grads)
