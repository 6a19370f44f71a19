"""Dense outputs: a segmenter's ``(B, K, H, W)`` class scores, the classes each image's argmax mask
holds with their areas, and the targets explained when none are given (each image's most frequent
predicted class over its own predicted mask)."""

from __future__ import annotations

from typing import Any

import torch

from pytorch_grad_cam._core.outputs import find_scores
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget


def dense_scores(outputs: Any, batch_size: int | None = None) -> torch.Tensor | None:
    """The ``(B, K, H, W)`` class scores of a segmenter's output, or None.

    Read by :func:`~pytorch_grad_cam._core.outputs.find_scores`'s rule (a tensor itself, a
    ``logits`` entry, else the first 4-D tensor with ``B`` rows: torchvision's ``{"out": ...}``);
    HuggingFace's ``logits`` may be at a lower resolution than the input.
    """
    try:
        scores = find_scores(outputs, 4, batch_size=batch_size)
    except (TypeError, ValueError):
        return None
    if scores.dim() != 4 or not scores.is_floating_point():
        return None
    if batch_size is not None and scores.shape[0] != batch_size:
        return None
    return scores


def predicted_classes(scores: torch.Tensor) -> list[torch.Tensor]:
    """Per image, its classes ordered by predicted area (largest first, ties: lower index first).

    Args:
        scores: ``(B, K, H, W)`` class scores.

    Returns:
        per image a ``(n,)`` long tensor of the classes its argmax mask contains.
    """
    labels = scores.detach().argmax(dim=1).flatten(1)
    counts = torch.stack([torch.bincount(row, minlength=scores.shape[1]) for row in labels])
    found = []
    for row in counts:
        order = sorted(range(len(row)), key=lambda k: (-int(row[k]), k))
        found.append(torch.tensor([k for k in order if int(row[k]) > 0], dtype=torch.long))
    return found


def class_areas(scores: torch.Tensor, min_area: float = 0.0) -> list[list[tuple[int, float]]]:
    """Per image, the classes of its argmax mask covering at least ``min_area`` of it, with that share.

    Args:
        scores: ``(B, K, H, W)`` class scores.
        min_area: the smallest share of the ``H x W`` output positions a class must cover, in [0, 1]
            (0: every class present).

    Returns:
        per image ``(class, share)`` pairs, in :func:`predicted_classes`' order (largest first).
    """
    labels = scores.detach().argmax(dim=1).flatten(1)
    total = labels.shape[1]
    found = []
    for row, order in zip(labels, predicted_classes(scores)):
        counts = torch.bincount(row, minlength=scores.shape[1])
        shares = [(int(k), int(counts[k]) / total) for k in order]
        found.append([(k, share) for k, share in shares if share >= min_area])
    return found


def segmentation_target(scores: torch.Tensor, index: int, category: int) -> SemanticSegmentationTarget:
    """The target of one class of one image: its scores summed over the image's own predicted mask
    of that class (at the output's resolution)."""
    mask = (scores[index].detach().argmax(dim=0) == category).float()
    return SemanticSegmentationTarget(category, mask.cpu())


def default_segmentation_targets(scores: torch.Tensor) -> list[SemanticSegmentationTarget]:
    """``targets=None`` on a segmenter: per image, its most frequent predicted class (the argmax
    over classes, background included: nothing is special), scored over its own predicted mask."""
    return [
        segmentation_target(scores, i, int(order[0])) for i, order in enumerate(predicted_classes(scores))
    ]
