"""An audit: every method and baseline scored on one batch, and the leaderboard read against the baselines.

:func:`audit_batch` computes, per image, the localisation metrics (when masks are given) and the sanity
checks (model-parameter randomisation, random logit) of each explainer; :func:`leaderboard` turns
per-image scores into means with 95% confidence intervals and marks every method that does not beat
the best baseline on a metric. Metric names and directions are in :data:`METRICS`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam.metrics.baselines import BASELINES
from pytorch_grad_cam.metrics.explainers import Explainer
from pytorch_grad_cam.metrics.localisation import (
    energy_pointing_game,
    pointing_game,
    relevance_mass,
    relevance_rank,
    thresholded_iou,
)
from pytorch_grad_cam.metrics.random_logit import random_logit
from pytorch_grad_cam.metrics.randomisation import randomisation_tests

#: metric -> True when higher is better. Localisation: the map on the object; sanity: the similarity
#: of the map to itself after randomising the model or the class (a faithful map changes: lower).
METRICS = {
    "pointing_game": True,
    "energy_pointing_game": True,
    "relevance_mass": True,
    "relevance_rank": True,
    "iou": True,
    "randomisation_spearman": False,
    "randomisation_ssim": False,
    "random_logit_ssim": False,
}
#: the sanity checks :func:`audit_batch` can run
SANITY_CHECKS = ("randomisation", "random_logit")


@dataclasses.dataclass
class BatchAudit:
    """One batch's scores.

    Attributes:
        scores: explainer -> metric -> ``(B,)`` float64 (NaN where a metric has no answer).
        curves: explainer -> ``(L, B)`` Spearman per cascading randomisation step.
        layers: the randomised layers, top first.
        classes: the classes explained.
    """

    scores: dict[str, dict[str, torch.Tensor]]
    curves: dict[str, torch.Tensor]
    layers: list[str]
    classes: list[int]


def localisation_scores(
    maps: torch.Tensor,
    box_masks: torch.Tensor,
    masks: torch.Tensor,
    *,
    tolerance: float = 15,
    threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """The five localisation metrics of ``(B, H, W)`` maps: boxes for the pointing games, masks else."""
    return {
        "pointing_game": pointing_game(maps, box_masks | masks, tolerance=tolerance),
        "energy_pointing_game": energy_pointing_game(maps, box_masks),
        "relevance_mass": relevance_mass(maps, masks),
        "relevance_rank": relevance_rank(maps, masks),
        "iou": thresholded_iou(maps, masks, threshold=threshold),
    }


def audit_batch(
    model: nn.Module,
    images: torch.Tensor,
    explainers: Mapping[str, Explainer],
    *,
    classes: Sequence[int] | None = None,
    masks: tuple[torch.Tensor, torch.Tensor] | None = None,
    sanity: Sequence[str] = SANITY_CHECKS,
    num_classes: int | None = None,
    layers: Sequence[str] | None = None,
    steps: int | None = None,
    seed: int = 1810,
    keys: Sequence[int] | None = None,
    tolerance: float = 15,
    threshold: float = 0.5,
) -> BatchAudit:
    """Score every explainer on one batch.

    Cost per explainer: 1 explanation, plus ``L`` (randomisation: ``L`` steps, on one deep copy of
    the model shared by the explainers) and 1 (random logit); plus 1 forward pass for the classes
    when not given. The localisation metrics cost none.

    Args:
        model: the classifier (left as it was).
        images: ``(B, C, H, W)``.
        explainers: name -> explainer (CAM methods and baselines).
        classes: the class explained per image; None: the top class.
        masks: ``(boxes' mask, objects' mask)``, each ``(B, H, W)`` bool at the maps' size; None: no
            localisation metrics.
        sanity: which of :data:`SANITY_CHECKS` to run.
        num_classes: for the random logit; None: the model's output width.
        layers: the randomised layers (module names, top first); None: every one owning parameters.
        steps: the randomisation's steps (groups of layers); None: a layer a step.
        seed: the randomisation's and the random logit's.
        keys: the images' indices in the dataset (the random logit's other class depends on them).
        tolerance, threshold: the pointing game's tolerance in pixels, the IoU's threshold (a share
            of each map's maximum).
    """
    unknown = [check for check in sanity if check not in SANITY_CHECKS]
    if unknown:
        raise ValueError(f"sanity must name checks of {SANITY_CHECKS}; got {unknown}")
    if classes is None or (num_classes is None and "random_logit" in sanity):
        with torch.no_grad():
            logits = classifier_logits(model(images), batch_size=images.shape[0])
        classes = logits.argmax(dim=-1).tolist() if classes is None else classes
        num_classes = int(logits.shape[-1]) if num_classes is None else num_classes
    classes = [int(k) for k in classes]
    scores: dict[str, dict[str, torch.Tensor]] = {}
    maps = {
        name: explain(model, images, classes).detach().float().cpu() for name, explain in explainers.items()
    }
    for name in explainers:
        scores[name] = {}
        if masks is not None:
            scores[name].update(
                localisation_scores(maps[name], *masks, tolerance=tolerance, threshold=threshold)
            )
    curves: dict[str, torch.Tensor] = {}
    names: list[str] = []
    if "randomisation" in sanity and explainers:
        tests = randomisation_tests(
            model, images, explainers, classes=classes, layers=layers, steps=steps, seed=seed, maps=maps
        )
        for name, test in tests.items():
            scores[name]["randomisation_spearman"] = test.spearman[-1]
            scores[name]["randomisation_ssim"] = test.ssim[-1]
            curves[name], names = test.spearman, test.layers
    if "random_logit" in sanity:
        for name, explain in explainers.items():
            test = random_logit(
                model,
                images,
                explain,
                num_classes=num_classes,
                classes=classes,
                seed=seed,
                keys=keys,
                maps=maps[name],
            )
            scores[name]["random_logit_ssim"] = test.ssim
    return BatchAudit(scores, curves, names, classes)


@dataclasses.dataclass
class Row:
    """One explainer's summary of one metric over the images."""

    mean: float
    low: float
    high: float
    count: int
    beats_baselines: bool | None  # None for a baseline, or with no baseline to compare


def mean_interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """Mean and 95% normal-approximation interval ``mean +- 1.96 s / sqrt(n)`` of the finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, math.nan, math.nan, 0
    n = len(finite)
    mean = sum(finite) / n
    spread = 0.0
    if n > 1:
        spread = 1.96 * math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1) / n)
    return mean, mean - spread, mean + spread, n


def leaderboard(per_image: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, dict[str, Row]]:
    """Explainer -> metric -> :class:`Row`; a method beats the baselines on a metric when its mean is
    better (by :data:`METRICS`' direction) than every baseline's (names in :data:`BASELINES`)."""
    table = {
        name: {metric: Row(*mean_interval(values), None) for metric, values in metrics.items()}
        for name, metrics in per_image.items()
    }
    for name, rows in table.items():
        if name in BASELINES:
            continue
        for metric, row in rows.items():
            higher = METRICS.get(metric, True)
            others = [table[b][metric].mean for b in BASELINES if b in table and metric in table[b]]
            others = [value for value in others if math.isfinite(value)]
            if others and math.isfinite(row.mean):
                best = max(others) if higher else min(others)
                row.beats_baselines = row.mean > best if higher else row.mean < best
    return table


def format_leaderboard(table: Mapping[str, Mapping[str, Row]], metrics: Sequence[str] | None = None) -> str:
    """A markdown table: one row per explainer, ``mean ± half-interval`` per metric; ``*`` marks a
    method whose mean does not beat the best baseline's on that metric."""
    if metrics is None:
        metrics = [m for m in METRICS if any(m in rows for rows in table.values())]
    arrows = {metric: "↑" if METRICS.get(metric, True) else "↓" for metric in metrics}
    lines = [
        "| explainer | " + " | ".join(f"{metric} {arrows[metric]}" for metric in metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for name, rows in table.items():
        cells = []
        for metric in metrics:
            row = rows.get(metric)
            if row is None or not math.isfinite(row.mean):
                cells.append("–")
                continue
            mark = "*" if row.beats_baselines is False else ""
            cells.append(f"{row.mean:.3f} ± {(row.high - row.low) / 2:.3f}{mark}")
        label = f"{name} (baseline)" if name in BASELINES else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
