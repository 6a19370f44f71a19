"""Confidence change when the image is multiplied by its CAM (pytorch-grad-cam 1.5.x names).

The perturbed image is ``x * cam`` (the map broadcast over the channels, applied to the input as
the model takes it, i.e. after normalisation): regions the CAM calls irrelevant are pushed to 0.
A faithful CAM keeps the target's score, so its confidence drops little.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric
from pytorch_grad_cam.metrics.scoring import DEFAULT_BATCH_SIZE
from pytorch_grad_cam.utils.validation import Target

MetricResult = Union[np.ndarray, "tuple[np.ndarray, torch.Tensor]"]


def multiply_tensor_with_cam(input_tensor: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """``input_tensor * cam``: an image ``(C, *S)`` times its map ``(*S)``, broadcast over C."""
    return input_tensor * cam


class CamMultImageConfidenceChange(PerturbationConfidenceMetric):
    """``score(x * cam) - score(x)`` per image (higher: the CAM keeps more of the evidence).

    Args:
        batch_size: perturbed images per forward pass.
    """

    def __init__(self, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        super().__init__(multiply_tensor_with_cam, batch_size=batch_size)


def _map_scores(result: MetricResult, fn) -> MetricResult:
    if isinstance(result, tuple):
        return fn(result[0]), result[1]
    return fn(result)


class DropInConfidence(CamMultImageConfidenceChange):
    """``max(score(x) - score(x * cam), 0)`` per image: how much confidence is lost (lower is better)."""

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> MetricResult:
        result = super().__call__(input_tensor, cams, targets, model, return_visualization, return_diff)
        return _map_scores(result, lambda s: np.maximum(-s, 0).astype(np.float32))


class IncreaseInConfidence(CamMultImageConfidenceChange):
    """1.0 where ``score(x * cam) > score(x)``, else 0.0 (its batch mean: the share of images that gain)."""

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> MetricResult:
        result = super().__call__(input_tensor, cams, targets, model, return_visualization, return_diff)
        return _map_scores(result, lambda s: np.float32(s > 0))
