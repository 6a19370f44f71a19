"""HiResCAM."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class HiResCAM(BaseCAM):
    """HiResCAM: every activation weighted by its own gradient, with no averaging.

    Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", 2020, https://arxiv.org/abs/2011.08891

    ``CAM = relu(sum_c G_c * A_c)`` (elementwise). For a network whose target layer is followed
    only by a flatten and one linear layer, this is exactly the layer's contribution to the
    class score. ``eigen_smooth=True`` takes the first principal component of ``G * A`` instead
    of the channel sum, and warns that the faithfulness guarantee is then lost.
    """

    several_inputs = True

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return grads

    def start_call(self, *, eigen_smooth: bool) -> None:
        if eigen_smooth:
            warnings.warn(
                "HiResCAM with eigen_smooth=True: the faithfulness guarantee of HiResCAM does not hold "
                "for the smoothed map",
                stacklevel=caller_level(),
            )
