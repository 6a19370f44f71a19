"""RandomCAM: a baseline for the metrics."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target, check_seed
from pytorch_grad_cam.base_cam import BaseCAM


class RandomCAM(BaseCAM):
    """RandomCAM: activations weighted by random numbers, a baseline that any method should beat.

    From pytorch-grad-cam; a sanity baseline for the CAM metrics in the spirit of Adebayo et al.,
    "Sanity Checks for Saliency Maps", NeurIPS 2018, https://arxiv.org/abs/1810.03292: a map
    built from the model's activations but from no evidence about the class.

    ``w_c ~ U[-1, 1]`` drawn for each channel, ``CAM = relu(sum_c w_c A_c)``. One weight vector
    is drawn per target layer and call and shared by the images of the batch, so a batch gives the
    same maps as its images one by one. Targets are ignored; no gradients are computed.

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        seed: None draws from torch's global random generator (so ``torch.manual_seed`` makes it
            reproducible); an int makes every call draw the same weights.
    """

    uses_gradients = False
    uses_targets = False

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        seed = check_seed(seed)
        super().__init__(model, *args, **options)
        self.seed = seed

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        generator = None if self.seed is None else torch.Generator().manual_seed(int(self.seed))
        weights = torch.rand(activations.shape[1], generator=generator, dtype=torch.float32) * 2 - 1
        weights = weights.to(device=activations.device, dtype=activations.dtype)
        return weights.expand(activations.shape[0], -1)
