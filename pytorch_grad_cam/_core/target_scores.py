"""Target scores of a batch: each sample's target on its output, classifier targets read at once;
the targets explained when none are given."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from pytorch_grad_cam._core.outputs import (
    classifier_logits,
    find_scores,
    logits_of,
    sample_output,
    tensors_in,
)
from pytorch_grad_cam._core.segmentation import default_segmentation_targets, dense_scores
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def target_scores(
    targets: Sequence[Callable[[Any], torch.Tensor]], outputs: Any, batch_size: int
) -> torch.Tensor:
    """Evaluate each sample's target on that sample's output.

    Args:
        targets: one callable per sample.
        outputs: the model output for the batch.
        batch_size: the batch size.

    Returns:
        ``(B,)`` float32 scores.
    """
    batched = _classifier_scores(targets, outputs, batch_size)
    if batched is not None:
        return batched
    scores = []
    for index, target in enumerate(targets):
        score = target(sample_output(outputs, index, batch_size))
        if not isinstance(score, torch.Tensor):
            score = torch.as_tensor(score)
        if score.numel() != 1:
            raise ValueError(
                f"targets[{index}] ({target!r}) returned a tensor of shape {tuple(score.shape)}; a CAM "
                "target must return one scalar per sample"
            )
        scores.append(score.reshape(()).float())
    return torch.stack(scores)


def _classifier_scores(
    targets: Sequence[Callable[[Any], torch.Tensor]], outputs: Any, batch_size: int
) -> torch.Tensor | None:
    """The scores of :class:`ClassifierOutputTarget` targets read from the batch at once.

    The same numbers as calling each target on its sample (an index into each row of the
    ``(B, num_classes)`` logits, found by :func:`find_scores`), without a Python call per sample:
    AblationCAM scores thousands of ablated copies per image. None where the targets or the output
    are of another kind.
    """
    if len(targets) != batch_size or not all(type(t) is ClassifierOutputTarget for t in targets):
        return None
    if not isinstance(logits_of(outputs), torch.Tensor) and any(
        t.dim() == 0 or t.shape[0] != batch_size for t in tensors_in(outputs)
    ):
        # a tensor without a batch axis would be a whole tensor of each sample's output, where the
        # rule might find a (K,) before the logits: read per sample, as the targets do
        return None
    try:
        logits = find_scores(outputs, 2, batch_size=batch_size)
    except (TypeError, ValueError):
        return None  # the targets' own call says what is wrong
    if logits.dim() != 2:
        return None
    categories = [t.category for t in targets]
    for category in set(categories):
        targets[categories.index(category)](logits[0])  # the target's own range check and message
    index = torch.tensor(categories, device=logits.device)
    return logits[torch.arange(batch_size, device=logits.device), index].float()


def top_class_targets(outputs: Any) -> list[Callable[[Any], torch.Tensor]]:
    """Each image's top-scoring class (the argmax of the classifier output); on a segmenter's
    ``(B, K, H, W)`` output, its most frequent predicted class over its own predicted mask."""
    try:
        logits = classifier_logits(outputs)
    except ValueError:
        dense = dense_scores(outputs)
        if dense is None:
            raise
        return default_segmentation_targets(dense)
    return [ClassifierOutputTarget(int(k)) for k in logits.argmax(dim=-1).tolist()]
