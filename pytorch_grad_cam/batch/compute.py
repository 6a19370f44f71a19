"""The CAMs of one batch: its samples grouped by input shape, their targets, and the top class."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.outputs import classifier_logits


@dataclasses.dataclass
class Result:
    """A computed CAM (at the model's input size) and the model's top prediction."""

    cam: np.ndarray
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
    iterator = iter(loader)
    while True:
        tick = time.perf_counter()
        try:
            samples = next(iterator)
        except StopIteration:
            return
        data_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        results: dict[int, Result] = {}
        groups: dict[tuple[int, ...], list[Sample]] = {}
        for sample in samples:
            if sample.error is None:
                groups.setdefault(tuple(sample.tensor.shape), []).append(sample)
        for group in groups.values():
            batch = torch.stack([sample.tensor for sample in group])
            wanted = None
            if targets is not None:
                wanted = []
                for sample in group:
                    meta = sample.meta if image_dir is None else names[sample.index]
                    wanted.append(int(targets(meta)) if callable(targets) else targets)
            maps = cam(
                batch,
                targets=None if wanted is None else [ClassifierOutputTarget(k) for k in wanted],
                aug_smooth=aug_smooth,
                eigen_smooth=eigen_smooth,
            )
            try:
                logits = classifier_logits(cam.outputs).float()
            except ValueError:
                logits = None
            top_p, top_k = (None, None)
            if logits is not None:
                top_p, top_k = torch.softmax(logits, dim=-1).max(dim=-1)
            for row, sample in enumerate(group):
                predicted = int(top_k[row]) if top_k is not None else None
                target = None
                if cam.uses_targets:
                    target = wanted[row] if wanted is not None else predicted
                probability = round(float(top_p[row]), 6) if top_p is not None else None
                results[sample.index] = Result(maps[row], target, predicted, probability)
        cam_seconds = time.perf_counter() - tick
        yield [(sample, results.get(sample.index)) for sample in samples], cam_seconds, data_seconds
