"""Deletion and insertion curves and their areas (Petsiuk et al., RISE, BMVC 2018).

Paper: https://arxiv.org/abs/1806.07421. The pixels are ranked by the CAM, most relevant first
(ties in row-major order). Over ``steps`` equal steps, with ``n_k = floor(k * P / steps)`` of the
``P`` pixels selected at step ``k = 0 .. steps``:

- *deletion*: the ``n_k`` most relevant pixels are replaced by a baseline (default 0, i.e. the
  dataset mean of a normalised input); a faithful CAM makes the score fall fast: lower area is
  better.
- *insertion*: the ``n_k`` most relevant pixels are copied onto a baseline (default a Gaussian
  blur of the image, sigma 5, 11 taps); a faithful CAM makes the score rise fast: higher area is
  better.

The score is the target's output (use ``ClassifierOutputSoftmaxTarget`` for RISE's class
probability); the area is the trapezoid rule over the removed fraction ``n_k / P`` in [0, 1].
All ``steps + 1`` images of every image go through the model in batches of ``batch_size``.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target, positive_int
from pytorch_grad_cam.functional import gaussian_blur
from pytorch_grad_cam.metrics.scoring import (
    DEFAULT_BATCH_SIZE,
    check_metric_inputs,
    evaluating,
    original_scores,
    score_samples,
    to_numpy,
)

#: ``'zeros'``, ``'blur'``, a number, or a tensor broadcastable to the input batch.
Baseline = Union[str, float, torch.Tensor]
MODES = ("both", "deletion", "insertion")


def relevance_ranks(cams: torch.Tensor) -> torch.Tensor:
    """Each pixel's place in its map's order, most relevant first (ties: row-major order).

    Args:
        cams: ``(B, *S)`` maps.

    Returns:
        ``(B, P)`` long ranks, ``P = prod(S)``; rank 0 is the highest value.
    """
    flat = cams.reshape(cams.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def step_counts(pixels: int, steps: int) -> torch.Tensor:
    """``floor(k * pixels / steps)`` for ``k = 0 .. steps``: how many pixels each step selects."""
    return torch.arange(steps + 1, dtype=torch.long) * pixels // steps


def area_under_curve(curves: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Trapezoid-rule area of ``(B, K)`` curves sampled at ``(K,)`` fractions: ``(B,)``."""
    widths = torch.diff(fractions.to(curves.dtype))
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * widths).sum(dim=-1)


@dataclasses.dataclass(frozen=True)
class DeletionInsertionCurves:
    """The curves of a batch.

    Attributes:
        fractions: ``(K,)`` the fraction of pixels deleted / inserted at each step, 0 to 1.
        deletion: ``(B, K)`` scores while deleting (None if not computed).
        insertion: ``(B, K)`` scores while inserting (None if not computed).
    """

    fractions: np.ndarray
    deletion: np.ndarray | None
    insertion: np.ndarray | None

    def _auc(self, curves: np.ndarray | None, name: str) -> np.ndarray:
        if curves is None:
            raise ValueError(f"the {name} curve was not computed (mode excluded it)")
        areas = area_under_curve(torch.from_numpy(curves).double(), torch.from_numpy(self.fractions).double())
        return areas.float().numpy()

    @property
    def deletion_auc(self) -> np.ndarray:
        """``(B,)`` float32 area under the deletion curve (lower is better)."""
        return self._auc(self.deletion, "deletion")

    @property
    def insertion_auc(self) -> np.ndarray:
        """``(B,)`` float32 area under the insertion curve (higher is better)."""
        return self._auc(self.insertion, "insertion")


def _check_baseline(baseline: object, name: str) -> Baseline:
    if isinstance(baseline, str):
        if baseline not in ("zeros", "blur"):
            raise ValueError(f"{name} must be 'zeros', 'blur', a number or a tensor; got {baseline!r}")
        return baseline
    if isinstance(baseline, torch.Tensor):
        return baseline.detach()
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        return float(baseline)
    raise TypeError(f"{name} must be 'zeros', 'blur', a number or a tensor; got {type(baseline).__name__}")


class DeletionInsertion:
    """Deletion and insertion areas (RISE): how fast the score falls / rises along the CAM's order.

    Args:
        mode: what ``__call__`` returns per image: ``'both'`` (insertion area - deletion area,
            higher is better), ``'deletion'`` (lower is better) or ``'insertion'`` (higher is
            better). ``curves()`` computes only the curves the mode needs.
        steps: number of steps; each image costs ``steps + 1`` forward passes per curve.
        batch_size: images per forward pass.
        deletion_baseline: what deleted pixels become: ``'zeros'`` (default), ``'blur'``, a
            number, or a tensor broadcastable to the input ``(B, C, *S)``.
        insertion_baseline: what the not yet inserted pixels are: ``'blur'`` (default) or as
            ``deletion_baseline``.
        blur_sigma: the blur baseline's Gaussian sigma, in pixels.
        blur_kernel_size: the blur baseline's taps (odd).
    """

    def __init__(
        self,
        mode: str = "both",
        *,
        steps: int = 100,
        batch_size: int = DEFAULT_BATCH_SIZE,
        deletion_baseline: Baseline = "zeros",
        insertion_baseline: Baseline = "blur",
        blur_sigma: float = 5.0,
        blur_kernel_size: int = 11,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"steps must be an int >= 1; got {steps!r}")
        if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, numbers.Real) or not blur_sigma > 0:
            raise ValueError(f"blur_sigma must be a number > 0; got {blur_sigma!r}")
        if (
            isinstance(blur_kernel_size, bool)
            or not isinstance(blur_kernel_size, numbers.Integral)
            or blur_kernel_size < 1
            or blur_kernel_size % 2 == 0
        ):
            raise ValueError(f"blur_kernel_size must be an odd int >= 1; got {blur_kernel_size!r}")
        self.mode = mode
        self.steps = int(steps)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.deletion_baseline = _check_baseline(deletion_baseline, "deletion_baseline")
        self.insertion_baseline = _check_baseline(insertion_baseline, "insertion_baseline")
        self.blur_sigma = float(blur_sigma)
        self.blur_kernel_size = int(blur_kernel_size)

    def _baseline(self, spec: Baseline, images: torch.Tensor, name: str) -> torch.Tensor:
        if isinstance(spec, str):
            if spec == "zeros":
                return torch.zeros_like(images)
            return gaussian_blur(images, self.blur_sigma, self.blur_kernel_size)
        if isinstance(spec, float):
            return torch.full_like(images, spec)
        try:
            return torch.broadcast_to(spec.to(device=images.device, dtype=images.dtype), images.shape)
        except RuntimeError as error:
            raise ValueError(
                f"{name} of shape {tuple(spec.shape)} does not broadcast to the input {tuple(images.shape)}"
            ) from error

    def curves(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
    ) -> DeletionInsertionCurves:
        """The deletion and/or insertion curves of a batch.

        Args:
            input_tensor: ``(B, C, *S)`` images (as the model takes them).
            cams: ``(B, *S)`` maps.
            targets: one target per image, or None for each image's top class.
            model: the network; it runs in eval mode under ``no_grad`` and is left as it was.

        Returns:
            The curves, each ``(B, steps + 1)`` float32.
        """
        input_tensor, cams, resolved = check_metric_inputs(input_tensor, cams, targets, model)
        count = input_tensor.shape[0]
        pixels = cams[0].numel()
        if self.steps > pixels:
            raise ValueError(
                f"steps={self.steps} exceeds the {pixels} pixels of each map; use steps <= {pixels}"
            )
        ranks = relevance_ranks(cams)
        counts = step_counts(pixels, self.steps).to(ranks.device)
        spatial = input_tensor.shape[2:]
        wanted = {
            "deletion": self.mode in ("both", "deletion"),
            "insertion": self.mode in ("both", "insertion"),
        }
        with evaluating(model):
            if resolved is None:
                _, resolved = original_scores(model, input_tensor, None)
            chosen: list[Target] = resolved
            curves: dict[str, np.ndarray | None] = {}
            for kind, wanted_kind in wanted.items():
                if not wanted_kind:
                    curves[kind] = None
                    continue
                spec = self.deletion_baseline if kind == "deletion" else self.insertion_baseline
                baseline = self._baseline(spec, input_tensor, f"{kind}_baseline")
                # deletion: the selected pixels take the baseline; insertion: they take the image.
                selected_src, rest_src = (
                    (baseline, input_tensor) if kind == "deletion" else (input_tensor, baseline)
                )
                samples = (
                    (
                        torch.where((ranks[i] < n).view(1, *spatial), selected_src[i], rest_src[i]),
                        chosen[i],
                    )
                    for i in range(count)
                    for n in counts.tolist()
                )
                scores, _ = score_samples(model, samples, self.batch_size)
                curves[kind] = to_numpy(scores.view(count, self.steps + 1))
        fractions = (counts.double() / pixels).cpu().numpy()
        return DeletionInsertionCurves(fractions, curves["deletion"], curves["insertion"])

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
    ) -> np.ndarray:
        """``(B,)`` float32 per ``mode``: insertion - deletion area, deletion area, or insertion area."""
        result = self.curves(input_tensor, cams, targets, model)
        if self.mode == "deletion":
            return result.deletion_auc
        if self.mode == "insertion":
            return result.insertion_auc
        return (result.insertion_auc - result.deletion_auc).astype(np.float32)
