"""KPCA-CAM."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM


class KPCA_CAM(BaseCAM):
    """KPCA-CAM: like EigenCAM, with kernel PCA instead of PCA. No gradients, no class.

    Karmani, Sivakaran, Prasad, Ali, Yang and Tang, "KPCA-CAM: Visual Explainability of Deep
    Computer Vision Models using Kernel PCA", 2024, https://arxiv.org/abs/2410.00267

    Each image's activations form ``n = h*w`` samples of ``C`` features, centred over positions.
    With their kernel matrix ``K_ij = k(x_i, x_j)`` centred in feature space,
    ``K' = K - 1K/n - K1/n + 1K1/n^2``, and its top eigenpair ``(lambda_1, v_1)``:
    ``CAM = relu(sqrt(lambda_1) v_1)``, the sign of ``v_1`` fixed so its largest-magnitude entry
    is positive. This is scikit-learn's ``KernelPCA(n_components=1, kernel=kernel,
    gamma=gamma).fit_transform``, computed here in torch (float64, one batched ``eigh``; the cost
    grows as ``(h*w) ** 3``, fine for the usual 7x7 to 28x28 layers). ``eigen_smooth`` has no
    effect; targets are ignored. Works on 2-D and 3-D activations.

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        kernel: ``"sigmoid"`` (``tanh(gamma <x, y> + 1)``), ``"rbf"``, ``"poly"`` (degree 3),
            ``"linear"`` (plain PCA) or ``"cosine"``, as scikit-learn defines them.
        gamma: the kernel coefficient; None means ``1 / C``.
    """

    uses_gradients = False
    uses_targets = False

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        **options: Any,
    ) -> None:
        if kernel not in CF.KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(CF.KERNELS)}; got {kernel!r}")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, numbers.Real)):
            raise TypeError(f"gamma must be a number or None; got {gamma!r}")
        super().__init__(model, *args, **options)
        self.kernel = kernel
        self.gamma = None if gamma is None else float(gamma)

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        """Not used: the map is a kernel projection, not a weighting (see :meth:`get_cam_image`)."""
        raise NotImplementedError("KPCA_CAM computes its map in get_cam_image")

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
        eigen_smooth: bool = False,
    ) -> torch.Tensor:
        return CF.kernel_principal_component(activations, self.kernel, self.gamma)
