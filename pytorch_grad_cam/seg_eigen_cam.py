"""Seg-Eigen-CAM."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class SegEigenCAM(BaseCAM):
    """Seg-Eigen-CAM: the first principal component of ``|gradients| * activations``.

    Chung and Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic
    Segmentation Models", Applied Sciences 15(13), 7562, 2025, https://doi.org/10.3390/app15137562

    Made for segmentation targets such as
    :class:`~pytorch_grad_cam.utils.model_targets.SemanticSegmentationTarget`: the activations are
    weighted position by position by the magnitude of their gradient (no spatial averaging), and
    ``CAM = relu(X v_1)`` with ``X`` the centred ``(h*w, C)`` matrix of ``|G| * A`` and ``v_1`` its
    first right singular vector. The sign of ``v_1`` is chosen so that the projection's largest
    magnitude is positive (its maximum outweighs its minimum). Always a principal component:
    ``eigen_smooth`` changes nothing.
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
        return grads.abs()
