"""LayerCAM."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class LayerCAM(BaseCAM):
    """LayerCAM: every position weighted by its own positive gradient.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
    IEEE TIP 2021, http://mftp.mmcheng.net/Papers/21TIP_LayerCAM.pdf

    ``CAM = relu(sum_c relu(G_c) * A_c)`` (elementwise).
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return CF.layer_cam_weights(grads)
