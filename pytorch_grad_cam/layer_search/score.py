"""The score whose gradient the layer search's gradient rule reads: the targets', else the top
class's, else a segmenter's default targets', else the output's energy."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from pytorch_grad_cam._core.outputs import classifier_logits, tensors_in
from pytorch_grad_cam._core.segmentation import default_segmentation_targets, dense_scores
from pytorch_grad_cam._core.target_scores import target_scores

TARGETS = "the targets' score"
TOP_CLASS = "the top class's score"
ENERGY = "the output's energy (no targets, no class scores)"
SEGMENTATION = "the most frequent predicted class's scores over its mask (no targets, a dense output)"


def output_energy(outputs: Any) -> torch.Tensor:
    """Half the sum of squares of every floating-point tensor in a model output.

    The target-free score: its gradient with respect to a layer is zero only where no output
    value depends on the layer (a sum alone could cancel, e.g. through a softmax, whose outputs
    always add up to 1).

    Args:
        outputs: a model output (a tensor, or a tuple/list/dict/``ModelOutput`` holding tensors).

    Returns:
        a scalar.

    Raises:
        TypeError: the output holds no floating-point tensor.
    """
    found = [t for t in tensors_in(outputs) if t.is_floating_point()]
    if not found:
        raise TypeError(
            f"the model returned {type(outputs).__name__} with no floating-point tensor in it; the layer "
            "search needs a score (pass targets=[...] or target_layers=[...])"
        )
    return sum(0.5 * t.float().square().sum() for t in found)


def search_score(
    outputs: Any, targets: Sequence[Callable] | None, batch_size: int
) -> tuple[torch.Tensor, str]:
    """The summed score of a batch's output for the gradient rule, and which score it is.

    Args:
        outputs: the model output for the batch.
        targets: one target per image, or None.
        batch_size: B.

    Returns:
        ``(score, kind)``: the targets' summed scores and :data:`TARGETS`; with no
        targets, each image's top class score summed (:data:`TOP_CLASS`) when the output holds a
        ``(B, num_classes)`` tensor, else on a ``(B, K, H, W)`` output the targets a CAM explains
        with none given (:data:`SEGMENTATION`), else :func:`output_energy` (:data:`ENERGY`).
    """
    if targets is not None:
        return target_scores(list(targets), outputs, batch_size).sum(), TARGETS
    try:
        logits = classifier_logits(outputs, batch_size=batch_size)
    except ValueError:
        dense = dense_scores(outputs, batch_size)
        if dense is None:
            return output_energy(outputs), ENERGY
        targets = default_segmentation_targets(dense)
        return target_scores(targets, outputs, batch_size).sum(), SEGMENTATION
    return logits.max(dim=-1).values.sum(), TOP_CLASS
