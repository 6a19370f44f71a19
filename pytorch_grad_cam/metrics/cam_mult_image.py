"""Confidence change when the image is multiplied by its CAM (pytorch-grad-cam 1.5.x names).

The perturbed image is ``x * cam`` (the map broadcast over the channels, applied to the input as
the model takes it, i.e. after normalisation): regions the CAM calls irrelevant are pushed to 0.
A faithful CAM keeps the target's score, so its confidence drops little.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric
from pytorch_grad_cam.metrics.scoring import DEFAULT_BATCH_SIZE

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


class DropInConfidence(CamMultImageConfidenceChange):
    """``max(score(x) - score(x * cam), 0)`` per image: how much confidence is lost (lower is better)."""

    def finish_scores(self, scores: np.ndarray) -> np.ndarray:
        return np.maximum(-scores, 0).astype(np.float32)


class IncreaseInConfidence(CamMultImageConfidenceChange):
    """1.0 where ``score(x * cam) > score(x)``, else 0.0 (its batch mean: the share of images that gain)."""

    def finish_scores(self, scores: np.ndarray) -> np.ndarray:
        return np.float32(scores > 0)
