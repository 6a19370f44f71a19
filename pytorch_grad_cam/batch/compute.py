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
        finite = torch.isfinite(maps.flatten(1)).all(dim=1)
        if logits is not None:
            finite &= torch.isfinite(logits).all(dim=1).to(finite.device)
            top = torch.softmax(logits, dim=-1).max(dim=-1)
            top_p, top_k = top.values.tolist(), top.indices.tolist()  # one transfer per group
        for row, sample in enumerate(group):
            if not finite_row(sample, finite, row):
                continue
            predicted = top_k[row]
            target = None
            if cam.uses_targets:
                target = wanted[row] if wanted is not None else predicted
            probability = round(top_p[row], 6) if top_p[row] is not None else None
            results[sample.index] = Result(maps[row], target, predicted, probability)
        return results

    return timed_groups(loader, explain)


def finite_row(sample: Sample, finite: torch.Tensor, row: int) -> bool:
    """Whether row ``row`` of a group's outputs and maps is finite; if not, the sample's ``error`` says so."""
    if bool(finite[row]):
        return True
    sample.error = "the model's output or the CAM of this image is not finite (NaN or inf)"
    return False


def timed_groups(
    loader: DataLoader, explain: Callable[[list[Sample]], dict[int, R]]
) -> Iterator[tuple[list[tuple[Sample, R | None]], float, float]]:
    """Per batch of ``loader``: each sample with its result (None for a bad file), the seconds spent
    in ``explain``, and the seconds spent waiting for the batch.

    A group that raises is explained again one image at a time (:func:`isolated`): an image that
    fails alone gets the reason as its ``error`` and the others their results.

    Args:
        loader: yields lists of :class:`~pytorch_grad_cam.batch.sources.Sample`.
        explain: given the good samples of one input shape, their results by ``sample.index``
            (a sample it cannot explain, it leaves out after setting its ``error``).
    """
    iterator = iter(loader)
    explained = [False]  # whether any image of this run has been explained
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
            results.update(isolated(explain, group, explained))
        cam_seconds = time.perf_counter() - tick
        yield [(sample, results.get(sample.index)) for sample in samples], cam_seconds, data_seconds


def isolated(
    explain: Callable[[list[Sample]], dict[int, R]], group: list[Sample], explained: list[bool]
) -> dict[int, R]:
    """``explain(group)``; when it raises, each image alone, so that one bad image fails by itself.

    An image whose own call raises gets ``error`` = ``"the model or the CAM failed on this image:
    <exception>"`` (the run goes on). When nothing has been explained yet in this run and every
    image of a group of two or more fails alone with the group's own error, the error is the
    setup's (a layer not in the model, a wrong target), not the images': it is raised.
    """
    try:
        results = explain(group)
    except Exception as error:
        if len(group) == 1:
            group[0].error = _reason(error)
            return {}
        results, reasons = {}, []
        for sample in group:
            try:
                results.update(explain([sample]))
            except Exception as alone:
                sample.error = _reason(alone)
                reasons.append(sample.error)
        if not explained[0] and not results and set(reasons) == {_reason(error)}:
            for sample in group:
                sample.error = None
            raise
    explained[0] = explained[0] or bool(results)
    return results


def _reason(error: Exception) -> str:
    message = " ".join(str(error).split())
    return f"the model or the CAM failed on this image: {type(error).__name__}: {message}"
