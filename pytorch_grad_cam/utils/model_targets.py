"""Targets: callables that map one sample's model output to the score a CAM explains.

A target receives the model output of a single sample (the batch axis removed: a ``(N,)``
vector for a classifier, ``(N, H, W)`` for a segmenter, a dict/tuple of such slices for models that
return several things) and returns a scalar tensor. Any callable with that contract works as a
target; the classes here cover the common cases and keep the names of pytorch-grad-cam 1.5.x.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from pytorch_grad_cam.utils.outputs import logits_of


def _category_index(category: object, name: str = "category") -> int:
    if isinstance(category, bool) or not isinstance(category, numbers.Integral):
        raise TypeError(f"{name} must be an int class index; got {category!r}")
    return int(category)


def _class_scores(model_output: Any, category: int) -> torch.Tensor:
    """The class scores of one sample: the output itself, or its ``logits`` (dict, HuggingFace)."""
    scores = logits_of(model_output)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"a classifier target needs a tensor of class scores (or an output with 'logits'); "
            f"got {type(model_output).__name__}"
        )
    _check_category(category, scores.shape[-1])
    return scores


def _check_category(category: int, num_classes: int) -> None:
    if not 0 <= category < num_classes:
        raise ValueError(
            f"category {category} is out of range for a model output with {num_classes} classes "
            f"(expected 0 <= category < {num_classes})"
        )


class ClassifierOutputTarget:
    """The raw score (logit) of one class.

    Args:
        category: the class index, ``0 <= category < num_classes``.
    """

    def __init__(self, category: int) -> None:
        self.category = _category_index(category)

    def __call__(self, model_output: Any) -> torch.Tensor:
        """Return ``model_output[..., category]`` for a ``(N,)`` or ``(B, N)`` output (or its logits)."""
        return _class_scores(model_output, self.category)[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """The softmax probability of one class (softmax over the last axis)."""

    def __call__(self, model_output: Any) -> torch.Tensor:
        return torch.softmax(_class_scores(model_output, self.category), dim=-1)[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputSoftmaxTarget({self.category})"


class ClassifierOutputReST(ClassifierOutputTarget):
    """Cross-entropy of the class, negated so that a higher score means more of the class.

    As in pytorch-grad-cam 1.5.x: ``-cross_entropy(logits, category)`` = the log-softmax of
    the class.
    """

    def __call__(self, model_output: Any) -> torch.Tensor:
        return torch.log_softmax(_class_scores(model_output, self.category), dim=-1)[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputReST({self.category})"


class BinaryClassifierOutputTarget:
    """For a model with one output unit: the logit for class 1, minus the logit for class 0.

    Args:
        category: 1 explains the positive class, 0 the negative class.
    """

    def __init__(self, category: int) -> None:
        category = _category_index(category)
        if category not in (0, 1):
            raise ValueError(f"category must be 0 or 1 for a binary classifier; got {category}")
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if self.category == 1 else -1.0
        return model_output.squeeze(-1) * sign

    def __repr__(self) -> str:
        return f"BinaryClassifierOutputTarget({self.category})"


class SoftmaxOutputTarget:
    """The whole softmax vector (used by the metrics, not a scalar CAM target)."""

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model_output, dim=-1)


class RawScoresOutputTarget:
    """The raw output itself (used by the metrics, not a scalar CAM target)."""

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output


class SemanticSegmentationTarget:
    """The sum of one class's scores over a pixel mask of a segmentation output.

    Args:
        category: the class channel of the ``(N, H, W)`` per-sample output.
        mask: ``(H, W)`` array or tensor, typically 0/1 for the pixels of interest.
    """

    def __init__(self, category: int, mask: np.ndarray | torch.Tensor) -> None:
        self.category = _category_index(category)
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if mask.dim() != 2:
            raise ValueError(f"mask must be a 2-D (H, W) array; got shape {tuple(mask.shape)}")
        self.mask = mask.float()

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.dim() != 3:
            raise ValueError(
                "SemanticSegmentationTarget expects a per-sample output of shape (N, H, W); "
                f"got {tuple(model_output.shape)}"
            )
        _check_category(self.category, model_output.shape[0])
        if tuple(model_output.shape[1:]) != tuple(self.mask.shape):
            raise ValueError(
                f"mask shape {tuple(self.mask.shape)} does not match the output's spatial shape "
                f"{tuple(model_output.shape[1:])}"
            )
        mask = self.mask.to(device=model_output.device, dtype=model_output.dtype)
        return (model_output[self.category] * mask).sum()

    def __repr__(self) -> str:
        return f"SemanticSegmentationTarget({self.category}, mask of shape {tuple(self.mask.shape)})"
