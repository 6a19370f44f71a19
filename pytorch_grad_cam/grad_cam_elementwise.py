"""GradCAMElementWise."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class GradCAMElementWise(BaseCAM):
    """GradCAMElementWise: like HiResCAM, with a ReLU on each product before the channel sum.

    A variant of Grad-CAM (Selvaraju et al., https://arxiv.org/abs/1610.02391) and HiResCAM
    (Draelos and Carin, https://arxiv.org/abs/2011.08891) introduced by pytorch-grad-cam.

    ``CAM = relu(sum_c relu(G_c * A_c))`` (elementwise); ``eigen_smooth=True`` takes the first
    principal component of ``relu(G * A)``.
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        """Not used: the map is not a weighting of the activations (see :meth:`get_cam_image`)."""
        raise NotImplementedError("GradCAMElementWise computes its map in get_cam_image")

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
        eigen_smooth: bool = False,
    ) -> torch.Tensor:
        products = CF.elementwise_grad_cam(activations, grads)
        if eigen_smooth:
            return CF.first_principal_component(products)
        return products.sum(dim=1)
