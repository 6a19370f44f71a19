"""Segmentation runs of the dataset runner (``task="segmentation"``): one CAM per predicted class.

Per batch, the segmenter runs once (no gradients, eval mode) on the images of each input shape; each image's
argmax mask gives its classes covering at least ``min_area`` of it
(:func:`~pytorch_grad_cam._core.segmentation.class_areas`, largest first). Each class is then
explained with :class:`~pytorch_grad_cam.utils.model_targets.SemanticSegmentationTarget` over the
image's own mask of it, the image repeated once per class (as ``cam.py --task segmentation`` does),
in CAM calls of at most ``batch_size`` copies. An image's maps depend on that image alone.

The writer saves class ``k`` of image ``<name>`` as ``<name>.class<k>.npy`` (and
``<name>.class<k>.overlay.jpg`` with the class's mask outlined), and the image's manifest record
lists its classes (``classes``). An image with no class covering ``min_area`` is complete with an
empty list.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader

from pytorch_grad_cam._core.modes import model_in_eval_mode
from pytorch_grad_cam._core.segmentation import class_areas, dense_scores, segmentation_target
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.compute import finite_row, timed_groups
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.errors import ConfigError
from pytorch_grad_cam.registry import SEGMENTATION_METHODS


@dataclasses.dataclass(frozen=True)
class SegmentationOptions:
    """What a segmentation run explains: the classes covering at least ``min_area`` of each image."""

    min_area: float

    def settings(self) -> dict[str, Any]:
        """The run's settings entries (``run.json``): a resume with another value is refused."""
        return {"task": "segmentation", "min_area": self.min_area}


def segmentation_options(
    task: str, min_area: float, *, method_name: str, targets: Any, html: bool, aug_smooth: bool
) -> SegmentationOptions | None:
    """Check the segmentation arguments of :func:`~pytorch_grad_cam.batch.run`; None for another task.

    Raises:
        ConfigError: ``min_area`` outside [0, 1], or an option a segmentation run does not take
            (``targets``, ``html``, ``aug_smooth``, a method outside :data:`SEGMENTATION_METHODS`).
    """
    if task != "segmentation":
        return None
    if isinstance(min_area, bool) or not isinstance(min_area, numbers.Real) or not 0.0 <= min_area <= 1.0:
        raise ConfigError(f"min_area must be a share of the image in [0, 1]; got {min_area!r}")
    if method_name not in SEGMENTATION_METHODS:
        raise ConfigError(
            f"method {method_name!r} does not explain segmenter classes here; task='segmentation' takes one "
            f"of {', '.join(SEGMENTATION_METHODS)}"
        )
    refused = [
        name
        for name, given in (("targets", targets is not None), ("html", html), ("aug_smooth", aug_smooth))
        if given
    ]
    if refused:
        raise ConfigError(
            f"task='segmentation' explains the classes the segmenter predicts; it does not take "
            f"{', '.join(refused)} (targets: the predicted classes are the targets; html: the gallery shows "
            "one map per image; aug_smooth: a flipped view moves the objects but not their masks)"
        )
    return SegmentationOptions(float(min_area))


@dataclasses.dataclass
class ClassesResult:
    """One image's classes and their maps.

    Attributes:
        cams: ``(K, H, W)`` float32 maps in [0, 1] at the model's input size, one per class.
        classes: ``K`` class indices, largest area first.
        areas: ``K`` shares of the image each class covers, 6 decimals.
        masks: ``(K, h, w)`` bool, each class's pixels at the output's resolution.
    """

    cams: torch.Tensor
    classes: list[int]
    areas: list[float]
    masks: torch.Tensor


def segmentation_batches(
    loader: DataLoader,
    cam: BaseCAM,
    options: SegmentationOptions,
    *,
    device: torch.device,
    chunk: int,
    eigen_smooth: bool,
) -> Iterator[tuple[list[tuple[Sample, ClassesResult | None]], float, float]]:
    """Per batch: the samples with their classes and maps (None for a bad file), CAM seconds,
    data-wait seconds (as :func:`~pytorch_grad_cam.batch.compute.timed_batches`).

    Raises:
        ValueError: (through the first group) the model's output holds no ``(B, K, H, W)`` scores.
    """
    model: nn.Module = cam.model

    def explain(group: list[Sample]) -> dict[int, ClassesResult]:
        results: dict[int, ClassesResult] = {}
        batch = torch.stack([sample.tensor for sample in group]).to(device)
        with torch.no_grad(), model_in_eval_mode(model):  # as the CAM runs it; the flags restored
            scores = dense_scores(model(batch), len(group))
        if scores is None:
            raise ValueError(
                "task='segmentation': the model's output holds no (B, K, H, W) class scores (a tensor, a "
                "'logits' or 'out' entry); is it a segmenter?"
            )
        for row, (sample, found) in enumerate(zip(group, class_areas(scores, options.min_area))):
            targets = [segmentation_target(scores, row, k) for k, _ in found]
            x = batch[row : row + 1]
            maps = [
                cam.compute(x.repeat(len(part), 1, 1, 1), targets=part, eigen_smooth=eigen_smooth)
                for part in (targets[start : start + chunk] for start in range(0, len(targets), chunk))
            ]
            cams = torch.cat(maps) if maps else torch.zeros((0, *x.shape[-2:]))
            finite = torch.isfinite(cams).all() & torch.isfinite(scores[row]).all()
            if not finite_row(sample, finite.reshape(1).cpu(), 0):
                continue
            masks = [target.mask > 0 for target in targets]
            results[sample.index] = ClassesResult(
                cams,
                [k for k, _ in found],
                [round(share, 6) for _, share in found],
                torch.stack(masks) if masks else torch.zeros((0, *scores.shape[-2:]), dtype=torch.bool),
            )
        return results

    return timed_groups(loader, explain)


def class_paths(name: str, k: int, *, overlay: bool) -> dict[str, str | None]:
    """The files of class ``k`` of image ``name``, relative to the output folder."""
    return {"cam": f"{name}.class{k}.npy", "overlay": f"{name}.class{k}.overlay.jpg" if overlay else None}
