"""RefineCAM: the product of one CAM per target layer (pytorch-grad-cam 1.5.x's meta-method)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target, as_target_layers
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.grad_cam_plusplus import GradCAMPlusPlus


def product_of_maps(maps: torch.Tensor) -> torch.Tensor:
    """``(L, B, *S)`` maps in [0, 1] to ``(B, *S)``: their product over the layers, min-max scaled.

    A position stays bright only where every layer's map is bright: the coarse map of a late layer
    removes the scattered responses of an early one and keeps its detail.
    """
    return CF.scale_to_unit(maps.prod(dim=0))


class RefineCAM:
    """RefineCAM: a map from each target layer by ``base_method``, multiplied together.

    From pytorch-grad-cam 1.5.x (https://arxiv.org/abs/2605.14641): ``CAM = scale(prod_l CAM_l)``
    with ``CAM_l`` the ``base_method`` map of layer ``l`` (in [0, 1]) and ``scale`` the min-max
    scaling of each image. It denoises the maps of early layers with those of later ones. Each layer
    runs its own ``base_method`` call (one forward, and backward, per layer).

    Args:
        model: the network (left as it was, as by every CAM).
        target_layers: the layers, e.g. ``[model.layer2, model.layer3, model.layer4]``.
        reshape_transform: as for :class:`~pytorch_grad_cam.base_cam.BaseCAM`.
        base_method: a CAM class (default :class:`~pytorch_grad_cam.GradCAMPlusPlus`).
        **kwargs: more options for ``base_method`` (e.g. ``batch_size=`` for ScoreCAM).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        reshape_transform: Callable[[Any], torch.Tensor] | None = None,
        base_method: type[BaseCAM] = GradCAMPlusPlus,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(base_method, type) and issubclass(base_method, BaseCAM)):
            raise TypeError(f"base_method must be a CAM class such as GradCAM; got {base_method!r}")
        layers = as_target_layers(target_layers, None)
        self.base_cam_per_layer = [
            base_method(model, [layer], reshape_transform=reshape_transform, **kwargs) for layer in layers
        ]

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        eigen_smooth: bool = False,
        *,
        aug_smooth: bool = False,
    ) -> np.ndarray:
        """The refined maps ``(B, H, W)`` float32 in [0, 1] (arguments as :meth:`BaseCAM.__call__`)."""
        return self.forward(input_tensor, targets, eigen_smooth, aug_smooth=aug_smooth)

    def forward(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        eigen_smooth: bool = False,
        *,
        aug_smooth: bool = False,
    ) -> np.ndarray:
        """As :meth:`__call__` (the 1.5.x name)."""
        maps = [
            cam.compute(input_tensor, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
            for cam in self.base_cam_per_layer
        ]
        return product_of_maps(torch.stack(maps)).cpu().numpy()
