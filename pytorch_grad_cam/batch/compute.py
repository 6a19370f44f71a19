"""The CAMs of one batch: its samples grouped by input shape, their targets, and the top class.

The maps stay torch tensors from the CAM call to the writer, which converts each image's resized
map to numpy once, for the files it writes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
from torch.utils.data import DataLoader

from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

#: a group's result type (:class:`Result`, or a detection run's boxes and maps)
R = TypeVar("R")


@dataclasses.dataclass
class Result:
    """A computed CAM and the model's top prediction.

    Attributes:
        cam: ``(H, W)`` float32 map in [0, 1] at the model's input size (a tensor, where the CAM left it).
        target: the class explained (None for a method without targets).
        predicted: the top class (None for a model without ``(B, classes)`` scores).
        probability: its softmax probability, 6 decimals.
    """

    cam: torch.Tensor
    target: int | None
    predicted: int | None
    probability: float | None


def timed_batches(
    loader: DataLoader,
    cam: BaseCAM,
    targets: int | Callable[[Any], int] | None,
    aug_smooth: bool,
    eigen_smooth: bool,
    names: Sequence[str],
    image_dir: Path | None,
) -> Iterator[tuple[list[tuple[Sample, Result | None]], float, float]]:
    """Per batch: the samples with their results (None for a bad one), CAM seconds, data-wait seconds."""

    def explain(group: list[Sample]) -> dict[int, Result]:
        results: dict[int, Result] = {}
        batch = torch.stack([sample.tensor for sample in group])
        wanted = None
        if targets is not None:
            wanted = []
            for sample in group:
                meta = sample.meta if image_dir is None else names[sample.index]
                wanted.append(int(targets(meta)) if callable(targets) else targets)
        maps = cam.compute(
            batch,
            targets=None if wanted is None else [ClassifierOutputTarget(k) for k in wanted],
            aug_smooth=aug_smooth,
            eigen_smooth=eigen_smooth,
        )
        try:
            logits = classifier_logits(cam.outputs, batch_size=len(group)).float()
        except (TypeError, ValueError):
            logits = None
        top_p, top_k = [None] * len(group), [None] * len(group)
        if logits is not None:
            top = torch.softmax(logits, dim=-1).max(dim=-1)
            top_p, top_k = top.values.tolist(), top.indices.tolist()  # one transfer per group
        for row, sample in enumerate(group):
            predicted = top_k[row]
            target = None
            if cam.uses_targets:
                target = wanted[row] if wanted is not None else predicted
            probability = round(top_p[row], 6) if top_p[row] is not None else None
            results[sample.index] = Result(maps[row], target, predicted, probability)
        return results

    return timed_groups(loader, explain)


def timed_groups(
    loader: DataLoader, explain: Callable[[list[Sample]], dict[int, R]]
) -> Iterator[tuple[list[tuple[Sample, R | None]], float, float]]:
    """Per batch of ``loader``: each sample with its result (None for a bad file), the seconds spent
    in ``explain``, and the seconds spent waiting for the batch.

    Args:
        loader: yields lists of :class:`~pytorch_grad_cam.batch.sources.Sample`.
        explain: given the good samples of one input shape, their results by ``sample.index``.
    """
    iterator = iter(loader)
    while True:
        tick = time.perf_counter()
        try:
            samples = next(iterator)
        except StopIteration:
            return
        data_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        results: dict[int, R] = {}
        groups: dict[tuple[int, ...], list[Sample]] = {}
        for sample in samples:
            if sample.error is None:
                groups.setdefault(tuple(sample.tensor.shape), []).append(sample)
        for group in groups.values():
            results.update(explain(group))
        cam_seconds = time.perf_counter() - tick
        yield [(sample, results.get(sample.index)) for sample in samples], cam_seconds, data_seconds
