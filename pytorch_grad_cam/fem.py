"""FEM, the Feature Explanation Method."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class FEM(BaseCAM):
    """FEM: channels weighted by how often they fire far above their own mean. No gradients.

    Fuad, Martin, Giot, Bourqui, Benois-Pineau and Zemmar, "Features Understanding in 3D CNNs for
    Actions Recognition in Video", IPTA 2020, https://hal.science/hal-02963298/document

    As pytorch-grad-cam 1.5.x computes it: with ``mu_c`` and ``sigma_c`` the mean and
    (population) standard deviation of channel ``c`` over positions, the binary mask
    ``M_c = [A_c > mu_c + k sigma_c]`` (the k-sigma rule) gives the weight ``w_c = mean_ij M_cij``,
    and ``CAM = relu(sum_c w_c A_c)``. Class agnostic: targets are ignored; as in 1.5.x,
    ``eigen_smooth`` has no effect. Works on 2-D and 3-D activations.

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        k: the number of standard deviations above the mean that count as a strong response.
    """

    uses_gradients = False
    uses_targets = False

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        k: float = 2.0,
        **options: Any,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, numbers.Real):
            raise TypeError(f"k must be a number of standard deviations; got {k!r}")
        super().__init__(model, *args, **options)
        self.k = float(k)

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return CF.fem_weights(activations, self.k)

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
        eigen_smooth: bool = False,
    ) -> torch.Tensor:
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        return CF.weighted_sum(weights, activations)
