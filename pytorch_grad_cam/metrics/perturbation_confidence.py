"""Perturbation metrics: how a target's score changes when each image is perturbed by its CAM.

A *perturbation* maps one image ``(C, *S)`` and its CAM ``(*S)`` to a perturbed image of the same
shape. :class:`PerturbationConfidenceMetric` scores the perturbed batch against the original one;
:class:`RemoveMostRelevantFirst` / :class:`RemoveLeastRelevantFirst` turn a CAM into the binary
"keep" mask of an imputer (ROAD's MoRF and LeRF orders), and :class:`AveragerAcrossThresholds`
averages a metric over several removal percentiles. Names and call conventions follow
pytorch-grad-cam 1.5.x.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target, positive_int
from pytorch_grad_cam.metrics.scoring import (
    DEFAULT_BATCH_SIZE,
    check_metric_inputs,
    check_percentile,
    check_percentiles,
    evaluating,
    original_scores,
    score_samples,
    to_numpy,
)

#: ``perturbation(image, cam) -> image``: image ``(C, *S)``, cam ``(*S)``.
Perturbation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``imputer(image, keep) -> image``: image ``(C, H, W)``, keep ``(H, W)`` with 1 = keep, 0 = impute.
Imputer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: The removal percentiles ROAD averages over.
DEFAULT_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def _perturbed(
    perturbation: Perturbation, image: torch.Tensor, cam: torch.Tensor, index: int
) -> torch.Tensor:
    result = perturbation(image, cam)
    if not isinstance(result, torch.Tensor) or tuple(result.shape) != tuple(image.shape):
        got = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise ValueError(
            f"the perturbation {perturbation!r} returned {got} for image {index}; it must return a tensor of "
            f"the image's shape {tuple(image.shape)}"
        )
    return result.to(device=image.device, dtype=image.dtype)


def perturbation_scores(
    input_tensor: torch.Tensor,
    cams: np.ndarray | torch.Tensor,
    targets: Sequence[Target | int] | None,
    model: nn.Module,
    perturbations: Sequence[Perturbation],
    *,
    return_diff: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Score every image under every perturbation, all in shared batches.

    The perturbed images are made lazily, perturbation by perturbation and image by image within
    each (so a seeded random perturbation draws in a fixed order whatever ``batch_size`` is).

    Args:
        input_tensor: ``(B, C, *S)`` images.
        cams: ``(B, *S)`` maps.
        targets: one target per image, or None for each image's top class.
        model: the network (left in the mode it was in).
        perturbations: P perturbations.
        return_diff: subtract each image's unperturbed score.
        batch_size: images per forward pass.
        keep: also return the perturbed images.

    Returns:
        ``(P, B)`` float32 scores (CPU) and, if ``keep``, the ``P * B`` perturbed images.
    """
    batch_size = positive_int(batch_size, "batch_size")
    input_tensor, cams, resolved = check_metric_inputs(input_tensor, cams, targets, model)
    count = input_tensor.shape[0]
    with evaluating(model):
        before = None
        if return_diff or resolved is None:
            before, resolved = original_scores(model, input_tensor, resolved)
        chosen: list[Target] = resolved
        samples = (
            (_perturbed(perturbation, input_tensor[i], cams[i], i), chosen[i])
            for perturbation in perturbations
            for i in range(count)
        )
        after, kept = score_samples(model, samples, batch_size, keep=keep)
    after = after.view(len(perturbations), count)
    return (after - before if return_diff else after), kept


class PerturbationConfidenceMetric:
    """The change of each target's score when every image is perturbed by its CAM.

    Args:
        perturbation: ``perturbation(image, cam) -> image`` for one ``(C, *S)`` image and its
            ``(*S)`` map.
        batch_size: perturbed images per forward pass.
    """

    def __init__(self, perturbation: Perturbation, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not callable(perturbation):
            raise TypeError(f"perturbation must be callable; got {type(perturbation).__name__}")
        self.perturbation = perturbation
        self.batch_size = positive_int(batch_size, "batch_size")

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
        return_visualization: bool = False,
        return_diff: bool = True,
    ) -> Union[np.ndarray, tuple[np.ndarray, torch.Tensor]]:
        """Score a batch.

        Args:
            input_tensor: ``(B, C, *S)`` images (as the model takes them, e.g. normalised).
            cams: ``(B, *S)`` maps, e.g. a CAM call's output.
            targets: one target per image (callables such as ``ClassifierOutputSoftmaxTarget(k)``
                or int classes), or None for each image's top class.
            model: the network; it runs in eval mode under ``no_grad`` and is left as it was.
            return_visualization: also return the perturbed batch.
            return_diff: return ``score(perturbed) - score(original)`` (True, the default) or
                just ``score(perturbed)``.

        Returns:
            ``(B,)`` float32 scores, and with ``return_visualization`` the ``(B, C, *S)`` perturbed
            images.
        """
        self.check_images(input_tensor)
        scores, kept = perturbation_scores(
            input_tensor,
            cams,
            targets,
            model,
            [self.perturbation],
            return_diff=return_diff,
            batch_size=self.batch_size,
            keep=return_visualization,
        )
        result = self.finish_scores(to_numpy(scores[0]))
        if return_visualization:
            return result, torch.stack(kept)
        return result

    def check_images(self, input_tensor: torch.Tensor) -> None:
        """Refuse images this metric cannot perturb, before the model runs (any, by default)."""

    def finish_scores(self, scores: np.ndarray) -> np.ndarray:
        """The ``(B,)`` scores the metric reports from the score changes (themselves, by default)."""
        return scores


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Otsu's threshold of a set of values: ``values > threshold`` is the upper class.

    The values are binned into ``bins`` equal bins over [min, max]; the threshold is the bin
    centre that maximises the between-class variance (as ``skimage.filters.threshold_otsu``).

    Args:
        values: any shape, real.
        bins: number of histogram bins.

    Returns:
        A 0-d float64 tensor (the value itself when all values are equal).
    """
    flat = values.detach().reshape(-1).to(torch.float64)
    low, high = flat.min(), flat.max()
    if bool(low == high):
        return low
    hist = torch.histc(flat, bins=bins, min=float(low), max=float(high))
    edges = torch.linspace(float(low), float(high), bins + 1, dtype=torch.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    below = torch.cumsum(hist, 0)
    above = torch.cumsum(hist.flip(0), 0).flip(0)
    mean_below = torch.cumsum(hist * centres, 0) / below
    mean_above = torch.cumsum((hist * centres).flip(0), 0).flip(0) / above
    between = below[:-1] * above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
    return centres[int(torch.nan_to_num(between, nan=-1.0).argmax())]


def percentile_threshold(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """The ``percentile``-th percentile of ``values``, linearly interpolated, in their dtype.

    With ``pos = (n - 1) * percentile / 100`` between sorted values ``a = s[floor(pos)]`` and
    ``b = s[floor(pos) + 1]`` and ``t = pos - floor(pos)``: ``a + (b - a) t`` for ``t < 0.5``, else
    ``b - (b - a)(1 - t)``, computed in the values' dtype as ``numpy.percentile`` does for a
    Python-number percentile, so the threshold is bit-identical to it (``torch.quantile`` can
    differ by one ulp, which moves ties across the threshold).

    Returns:
        A 0-d tensor of ``values``' dtype.
    """
    flat = values.reshape(-1)
    count = flat.numel()
    position = (count - 1) * (float(percentile) / 100)
    low = math.floor(position)
    fraction = position - low
    ordered = torch.sort(flat).values
    a, b = ordered[low], ordered[min(low + 1, count - 1)]
    if fraction < 0.5:
        return a + (b - a) * torch.tensor(fraction, dtype=values.dtype, device=values.device)
    return b - (b - a) * torch.tensor(1 - fraction, dtype=values.dtype, device=values.device)


def keep_below_threshold(relevance: torch.Tensor, percentile: float | str) -> torch.Tensor:
    """The pixels a removal at ``percentile`` keeps: ``relevance < percentile_threshold(relevance, p)``.

    With ``'auto'``, the threshold is Otsu's and the pixels ``<=`` it are kept. (pytorch-grad-cam
    1.5.x's ``'auto'`` kept the *upper* Otsu class, the opposite of its percentile mode; here both
    modes remove the high values.)

    Returns:
        A bool tensor of ``relevance``'s shape.
    """
    if percentile == "auto":
        return relevance <= otsu_threshold(relevance).to(relevance.dtype)
    return relevance < percentile_threshold(relevance, float(percentile))


class RemoveMostRelevantFirst:
    """MoRF: impute the pixels at or above the CAM's ``percentile``-th percentile, keep the rest.

    ``percentile=80`` removes the top 20 % of the map. ``'auto'``: remove the upper class of
    Otsu's threshold.

    Args:
        percentile: in [0, 100], or ``'auto'``.
        imputer: ``imputer(image, keep)`` fills the pixels where ``keep`` is 0.
    """

    def __init__(self, percentile: float | str, imputer: Imputer) -> None:
        self.percentile = check_percentile(percentile)
        if not callable(imputer):
            raise TypeError(f"imputer must be callable; got {type(imputer).__name__}")
        self.imputer = imputer

    def relevance(self, mask: torch.Tensor) -> torch.Tensor:
        """The values ranked for removal (highest removed first)."""
        return mask

    def __call__(self, input_tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Impute the removed pixels of one ``(C, H, W)`` image given its ``(H, W)`` CAM."""
        keep = keep_below_threshold(self.relevance(mask), self.percentile)
        return self.imputer(input_tensor, keep.to(input_tensor.dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.percentile!r}, {self.imputer!r})"


class RemoveLeastRelevantFirst(RemoveMostRelevantFirst):
    """LeRF: the same on ``1 - cam``: ``percentile=20`` removes the 80 % least relevant pixels."""

    def relevance(self, mask: torch.Tensor) -> torch.Tensor:
        return 1 - mask


class AveragerAcrossThresholds:
    """The mean of a metric over several percentiles.

    Args:
        imputer: ``imputer(percentile)`` builds the metric of one percentile, e.g.
            ``ROADMostRelevantFirst``.
        percentiles: the percentiles to average over.
        batch_size: perturbed images per forward pass when the metrics are
            :class:`PerturbationConfidenceMetric` s (then all percentiles share batches);
            default: the first metric's.
    """

    def __init__(
        self,
        imputer: Callable[[float], Callable[..., np.ndarray]],
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        *,
        batch_size: int | None = None,
    ) -> None:
        if not callable(imputer):
            raise TypeError(f"imputer must be callable (percentile -> metric); got {type(imputer).__name__}")
        self.imputer = imputer
        self.percentiles = check_percentiles(percentiles)
        self.metrics = [imputer(p) for p in self.percentiles]
        self.batch_size = None if batch_size is None else positive_int(batch_size, "batch_size")

    def perturbations(self) -> list[Perturbation] | None:
        """The metrics' perturbations if all are :class:`PerturbationConfidenceMetric` s, else None."""
        if all(isinstance(m, PerturbationConfidenceMetric) for m in self.metrics):
            return [m.perturbation for m in self.metrics]
        return None

    def check_images(self, input_tensor: torch.Tensor) -> None:
        """Refuse images the metrics cannot perturb, before the model runs (any, by default)."""

    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        first = self.metrics[0]
        return first.batch_size if isinstance(first, PerturbationConfidenceMetric) else DEFAULT_BATCH_SIZE

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
    ) -> np.ndarray:
        """``(B,)`` float32: each image's metric averaged over the percentiles."""
        self.check_images(input_tensor)
        perturbations = self.perturbations()
        if perturbations is None:
            per_threshold = [np.float32(m(input_tensor, cams, targets, model)) for m in self.metrics]
            return np.mean(np.stack(per_threshold), axis=0).astype(np.float32)
        scores, _ = perturbation_scores(
            input_tensor, cams, targets, model, perturbations, batch_size=self.effective_batch_size()
        )
        return to_numpy(scores.mean(dim=0))
