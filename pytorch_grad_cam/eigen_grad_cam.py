"""EigenGradCAM."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class EigenGradCAM(BaseCAM):
    """EigenGradCAM: the first principal component of gradients x activations.

    Like EigenCAM (Muhammad and Yeasin, https://arxiv.org/abs/2008.00299) but class
    discriminative: ``CAM = relu(first principal component of G * A)``.
    """

    always_eigen = True

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return grads
