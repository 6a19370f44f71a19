"""HiResCAM."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.validation import Target


class HiResCAM(BaseCAM):
    """HiResCAM: every activation weighted by its own gradient, with no averaging.

    Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", 2020, https://arxiv.org/abs/2011.08891

    ``CAM = relu(sum_c G_c * A_c)`` (elementwise). For a network whose target layer is followed
    only by a flatten and one linear layer, this is exactly the layer's contribution to the
    class score. ``eigen_smooth=True`` takes the first principal component of ``G * A`` instead
    of the channel sum, and warns that the faithfulness guarantee is then lost.
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return grads

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        *,
        target_category: Sequence[int] | int | None = None,
    ) -> np.ndarray:
        if eigen_smooth is True:
            warnings.warn(
                "HiResCAM with eigen_smooth=True: the faithfulness guarantee of HiResCAM does not hold "
                "for the smoothed map",
                stacklevel=2,
            )
        return super().__call__(
            input_tensor, targets, aug_smooth, eigen_smooth, target_category=target_category
        )
