"""Smooth Grad-CAM++."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.validation import Target, check_seed, positive_int
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM


class SmoothGradCAMPlusPlus(BaseCAM):
    """Smooth Grad-CAM++: Grad-CAM++ with derivatives averaged over noisy copies of the input.

    Omeiza, Speakman, Cintas and Weldemariam, "Smooth Grad-CAM++: An Enhanced Inference Level
    Visualization Technique for Deep Convolutional Neural Network Models", 2019,
    https://arxiv.org/abs/1908.01224

    As torchcam 0.5 (``SmoothGradCAMpp``) computes it: the input ``x`` is run ``num_samples``
    times as ``x + n_m``, ``n_m ~ N(0, std^2)``, giving gradients ``G_m`` of the target score at
    the target layer; with ``D2 = mean_m G_m^2``, ``D3 = mean_m G_m^3`` and ``A`` the activations
    of the clean input,

    ``a = D2 / (2 D2 + sum_ij (D3 * A) + 1e-8)``, ``w_c = sum_ij a relu(G_n)``,
    ``CAM = relu(sum_c w_c A_n,c)``,

    where ``G_n`` and ``A_n`` are the gradient and activations of the last noisy copy (torchcam's
    hooks keep the last pass). The targets are chosen on the clean input. The noise has the
    shape of one image and is shared by the images of a batch, so with a ``seed`` a batch gives
    the same maps as its images one by one. Costs ``1 + num_samples`` forward passes and
    ``num_samples`` backward passes through the network after the target layers.

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        num_samples: the number of noisy copies.
        std: the standard deviation of the noise, in the input's units.
        seed: None draws the noise from torch's global random generator (as torchcam does); an int
            makes every call draw the same noise.
    """

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        num_samples: int = 4,
        std: float = 0.3,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        num_samples = positive_int(num_samples, "num_samples")
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not std >= 0:
            raise ValueError(f"std must be a number >= 0; got {std!r}")
        seed = check_seed(seed)
        super().__init__(model, *args, **options)
        self.num_samples = int(num_samples)
        self.std = float(std)
        self.seed = seed

    def differentiate(self, capture: ActivationsAndGradients, score: torch.Tensor) -> list[Any]:
        """None: the clean pass needs no gradient, the noisy passes give them (see :meth:`layer_maps`)."""
        return [None] * len(self.target_layers)

    def layer_maps(
        self,
        input_tensor: torch.Tensor,
        targets: list[Target] | None,
        activations: list[torch.Tensor],
        gradients: list[torch.Tensor | None],
        eigen_smooth: bool,
    ) -> list[torch.Tensor]:
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=input_tensor.device).manual_seed(int(self.seed))
        grads_2 = [torch.zeros_like(acts) for acts in activations]
        grads_3 = [torch.zeros_like(acts) for acts in activations]
        noisy = None
        for _ in range(self.num_samples):
            noise = torch.randn(
                (1, *input_tensor.shape[1:]),
                generator=generator,
                device=input_tensor.device,
                dtype=input_tensor.dtype,
            )
            noisy = self.run_view(
                input_tensor + noise * self.std, targets, differentiate=ActivationsAndGradients.gradients
            )
            for index, grads in enumerate(noisy.gradients):
                squared = grads * grads
                grads_2[index] += squared
                grads_3[index] += squared * grads
        maps = []
        for index, clean in enumerate(activations):
            weights = CF.smooth_grad_cam_plusplus_weights(
                grads_2[index] / self.num_samples,
                grads_3[index] / self.num_samples,
                clean,
                noisy.gradients[index],
            )
            last = noisy.activations[index]
            if eigen_smooth:
                maps.append(CF.first_principal_component(CF.expand_weights(weights, last) * last))
            else:
                maps.append(CF.weighted_sum(weights, last))
        return maps

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        """Not used: the weights need the noisy passes of all layers (see :meth:`layer_maps`)."""
        raise NotImplementedError("SmoothGradCAMPlusPlus computes its weights in layer_maps")
