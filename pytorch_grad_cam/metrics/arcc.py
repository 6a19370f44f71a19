"""ARCC: one faithfulness score from a CAM's coherency, its complexity and ROAD (1.5.x names).

- Complexity (Poppi et al., https://arxiv.org/abs/2104.10252): the mean absolute value of the map,
  in [0, 1] for maps in [0, 1]. Lower is better: a small region explains the prediction.
- Coherency (same paper): the Pearson correlation between the map and the map the same CAM method
  gives for the image multiplied by that map, rescaled to [0, 1] as ``(rho + 1) / 2``. Higher is
  better: the kept region still gives the same explanation.
- ARCC (https://arxiv.org/abs/2605.14641): the harmonic mean of coherency, ``1 - complexity`` and
  ROAD's combined score rescaled to [0, 1] (``clip(2 * road, 0, 1)``; ROAD is in [-0.5, 0.5]).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target, check_input_tensor
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.metrics.scoring import DEFAULT_BATCH_SIZE, as_cams, check_model, to_numpy

#: Added to each denominator, as 1.5.x does.
EPS = 1e-8
#: ARCC's ROAD percentiles (1.5.x's default).
ARCC_PERCENTILES = (20, 40, 60, 80)


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, *, eps: float = EPS) -> torch.Tensor:
    """Per-sample Pearson correlation ``cov(a, b) / (std(a) std(b) + eps)`` (``n - 1`` normalised).

    Args:
        a, b: ``(B, ...)`` of the same shape.

    Returns:
        ``(B,)``; 0 where either sample is constant.
    """
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    scale = max(a.shape[1] - 1, 1)
    covariance = (a * b).sum(dim=1) / scale
    deviations = ((a * a).sum(dim=1) / scale).sqrt() * ((b * b).sum(dim=1) / scale).sqrt()
    return covariance / (deviations + eps)


def batch_pearson_coherency(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """:func:`pearson_correlation` of two ``(B, ...)`` arrays (the 1.5.x name): ``(B,)`` float64."""
    return pearson_correlation(torch.as_tensor(np.asarray(A)), torch.as_tensor(np.asarray(B))).numpy()


def complexity(cams: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` maps to ``(B,)``: the mean absolute value of each map."""
    return cams.reshape(cams.shape[0], -1).abs().mean(dim=1)


def harmonic_arcc(coherency: torch.Tensor, complexity: torch.Tensor, road: torch.Tensor) -> torch.Tensor:
    """``3 / (1 / coherency + 1 / (1 - complexity) + 1 / clip(2 road, 0, 1))``, each term ``+ eps``."""
    road = (2 * road).clamp(0, 1)
    return 3 / (1 / (coherency + EPS) + 1 / ((1 - complexity) + EPS) + 1 / (road + EPS))


def _check_base_method(base_method: object) -> Callable[..., Any]:
    if not callable(base_method):
        raise TypeError(
            "base_method must be a CAM object, e.g. GradCAM(model, target_layers); "
            f"got {type(base_method).__name__}"
        )
    return base_method


class Complexity:
    """Complexity of each map: its mean absolute value (lower is better)."""

    def __call__(self, grayscale_cams: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(B, H, W)`` maps to ``(B,)`` float32."""
        if isinstance(grayscale_cams, np.ndarray):
            grayscale_cams = torch.from_numpy(np.ascontiguousarray(grayscale_cams))
        if not isinstance(grayscale_cams, torch.Tensor) or grayscale_cams.dim() < 2:
            raise TypeError("grayscale_cams must be a (B, H, W) numpy array or tensor")
        return to_numpy(complexity(grayscale_cams.detach().float()))


class Coherency:
    """Coherency of each map with the map of the image multiplied by it (higher is better)."""

    def __call__(
        self,
        input_tensor: torch.Tensor,
        grayscale_cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
        base_method: Callable[..., Any],
    ) -> np.ndarray:
        """``(B,)`` float32 ``(rho + 1) / 2``.

        Args:
            input_tensor: ``(B, C, H, W)`` the images the maps explain.
            grayscale_cams: ``(B, H, W)`` their maps (e.g. what ``base_method`` returned).
            targets: passed to ``base_method`` with the multiplied images.
            model: the model (kept for the 1.5.x signature; ``base_method`` runs its own).
            base_method: the CAM that made the maps, called as
                ``base_method(input_tensor=..., targets=...)``.
        """
        check_model(model)
        base_method = _check_base_method(base_method)
        input_tensor = check_input_tensor(input_tensor)
        cams = as_cams(grayscale_cams, input_tensor)
        mixed = input_tensor * cams.unsqueeze(1).to(input_tensor.dtype)
        mixed_cams = torch.as_tensor(np.asarray(base_method(input_tensor=mixed, targets=targets)))
        rho = pearson_correlation(mixed_cams, cams.cpu())
        return to_numpy(((rho + 1) / 2).float())


class ARCC:
    """The harmonic mean of coherency, ``1 - complexity`` and ROAD rescaled to [0, 1] (higher is better).

    Args:
        base_method: the CAM whose maps are scored (for :class:`Coherency`).
        road_percentiles: the percentiles of :class:`~pytorch_grad_cam.metrics.road.ROADCombined`.
        generator, batch_size: passed to ``ROADCombined`` (its noise, its forward batches).
    """

    def __init__(
        self,
        base_method: Callable[..., Any],
        road_percentiles: Sequence[float] = ARCC_PERCENTILES,
        *,
        generator: torch.Generator | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.base_method = _check_base_method(base_method)
        self.complexity = Complexity()
        self.coherency = Coherency()
        self.road = ROADCombined(percentiles=road_percentiles, generator=generator, batch_size=batch_size)

    def __call__(
        self,
        input_tensor: torch.Tensor,
        grayscale_cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
    ) -> np.ndarray:
        """``(B,)`` float32 ARCC scores (arguments as :class:`Coherency`)."""
        coherency = self.coherency(input_tensor, grayscale_cams, targets, model, self.base_method)
        road = self.road(input_tensor, grayscale_cams, targets, model)
        parts = (
            torch.from_numpy(coherency),
            torch.from_numpy(self.complexity(grayscale_cams)),
            torch.from_numpy(road),
        )
        return to_numpy(harmonic_arcc(*(part.double() for part in parts)).float())
