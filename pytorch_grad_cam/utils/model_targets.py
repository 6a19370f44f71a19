"""Targets: callables that map one sample's model output to the score a CAM explains.

A target receives the model output of a single sample (the batch axis removed: a ``(N,)``
vector for a classifier, ``(N, H, W)`` for a segmenter, a dict/tuple of such slices for models that
return several things) and returns a scalar tensor. Any callable with that contract works as a
target; the classes here cover the common cases and keep the names of pytorch-grad-cam 1.5.x.

Where the output holds several things (``(logits, aux)``, a dict, HuggingFace's ``ModelOutput``),
the classes read the scores by :func:`~pytorch_grad_cam._core.outputs.find_scores`'s rule: a
``logits`` entry first, else the first tensor of the shape they read (``(N,)`` for class scores,
``(N, H, W)`` for a segmentation), in order, depth first. To explain another element, pass a
callable that picks it, e.g. ``lambda output: output[1][k]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch

from pytorch_grad_cam._core.outputs import find_scores

#: the detection targets live in :mod:`pytorch_grad_cam.detection.targets`; importable from here as
#: the other targets, loaded on first use (a classifier's program never imports the detection package)
_DETECTION_NAMES = ("DetectionTarget", "predictions_to_targets")


def __getattr__(name: str) -> Any:
    if name in _DETECTION_NAMES:
        from pytorch_grad_cam.detection import targets

        return getattr(targets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _category_index(category: object, name: str = "category") -> int:
    if isinstance(category, bool) or not isinstance(category, numbers.Integral):
        raise TypeError(f"{name} must be an int class index; got {category!r}")
    return int(category)


def _scores(model_output: Any, target: object, dims: int, expected: str) -> torch.Tensor:
    """The tensor a target reads in one sample's output, by :func:`find_scores`'s rule."""
    return find_scores(
        model_output,
        dims,
        reader=f"{target!r} needs {expected}",
        hint="To explain another element of the output, pass a target callable that picks it, "
        "e.g. lambda output: output[1][k].",
    )


def _class_scores(model_output: Any, category: int, target: object) -> torch.Tensor:
    """The class scores of one sample: the output itself, its ``logits``, or its first ``(N,)`` tensor."""
    scores = _scores(model_output, target, 1, "a tensor of class scores, (num_classes,) per sample")
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
        return _class_scores(model_output, self.category, self)[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


class ClassifierOutputSoftmaxTarget(ClassifierOutputTarget):
    """The softmax probability of one class (softmax over the last axis)."""

    def __call__(self, model_output: Any) -> torch.Tensor:
        return torch.softmax(_class_scores(model_output, self.category, self), dim=-1)[..., self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputSoftmaxTarget({self.category})"


class ClassifierOutputReST(ClassifierOutputTarget):
    """ReST, the Residual Softmax Target-Class score: the class's logit plus its log-probability.

    ``y_k + log softmax(y)_k`` = ``y_k - cross_entropy(y, k)``, as pytorch-grad-cam 1.5.x and the
    ShapleyCAM paper (Cai, https://arxiv.org/abs/2501.06261) define it: the logit keeps the
    class's own evidence and the log-softmax term subtracts the evidence for the other classes.
    """

    def __call__(self, model_output: Any) -> torch.Tensor:
        scores = _class_scores(model_output, self.category, self)
        return scores[..., self.category] + torch.log_softmax(scores, dim=-1)[..., self.category]

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

    def __call__(self, model_output: Any) -> torch.Tensor:
        sign = 1.0 if self.category == 1 else -1.0
        scores = _scores(model_output, self, 1, "the logit, a (1,) vector per sample")
        return scores.squeeze(-1) * sign

    def __repr__(self) -> str:
        return f"BinaryClassifierOutputTarget({self.category})"


class SoftmaxOutputTarget:
    """The whole softmax vector (used by the metrics, not a scalar CAM target)."""

    def __call__(self, model_output: Any) -> torch.Tensor:
        return torch.softmax(_scores(model_output, self, 1, "class scores"), dim=-1)

    def __repr__(self) -> str:
        return "SoftmaxOutputTarget()"


class RawScoresOutputTarget:
    """The raw class scores (used by the metrics, not a scalar CAM target)."""

    def __call__(self, model_output: Any) -> torch.Tensor:
        return _scores(model_output, self, 1, "class scores")

    def __repr__(self) -> str:
        return "RawScoresOutputTarget()"


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

    def __call__(self, model_output: Any) -> torch.Tensor:
        model_output = _scores(model_output, self, 3, "a per-sample output of shape (N, H, W)")
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


class FasterRCNNBoxScoreTarget:
    """For a detector: how well its detections match reference boxes, as pytorch-grad-cam 1.5.x scores it.

    For every reference box, the detection with the highest IoU is found; if that IoU exceeds
    ``iou_threshold`` and the detection has the reference label, ``IoU + detection score`` is
    added. The target is the sum (0 when nothing matches), so a CAM explains what makes the
    detector find those boxes. The per-image model output is torchvision's detection dict with
    ``boxes`` ``(N, 4)`` (``x1, y1, x2, y2``), ``labels`` ``(N,)`` and ``scores`` ``(N,)``.

    Args:
        labels: one class label per reference box.
        bounding_boxes: ``(K, 4)`` reference boxes (array, tensor or nested list).
        iou_threshold: the IoU a detection must exceed to count.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        bounding_boxes: Sequence[Sequence[float]] | np.ndarray | torch.Tensor,
        iou_threshold: float = 0.5,
    ) -> None:
        boxes = torch.as_tensor(
            np.asarray(bounding_boxes, dtype=np.float32)
            if not isinstance(bounding_boxes, torch.Tensor)
            else bounding_boxes
        ).float()
        if boxes.dim() == 1 and boxes.numel() == 4:
            boxes = boxes.unsqueeze(0)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"bounding_boxes must have shape (K, 4) as (x1, y1, x2, y2); got {tuple(boxes.shape)}"
            )
        label_list = [
            _category_index(label, "labels entries")
            for label in (labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels))
        ]
        if len(label_list) != boxes.shape[0]:
            raise ValueError(
                f"got {len(label_list)} labels for {boxes.shape[0]} bounding boxes; pass one label per box"
            )
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
            raise TypeError(f"iou_threshold must be a number; got {iou_threshold!r}")
        self.labels = label_list
        self.bounding_boxes = boxes
        self.iou_threshold = float(iou_threshold)

    def __call__(self, model_output: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(model_output, Mapping) or not {"boxes", "labels", "scores"} <= set(model_output):
            raise ValueError(
                "FasterRCNNBoxScoreTarget expects one image's detections: a dict with 'boxes', 'labels' "
                f"and 'scores' (torchvision's detection output); got {type(model_output).__name__}"
            )
        detected = model_output["boxes"]
        scores = model_output["scores"]
        total = scores.new_zeros(())
        if detected.shape[0] == 0:
            return total
        from pytorch_grad_cam.detection.outputs import box_iou  # a detector's target: loaded on use

        ious = box_iou(self.bounding_boxes.to(device=detected.device, dtype=detected.dtype), detected)
        for row, label in enumerate(self.labels):
            best = int(ious[row].argmax())
            if ious[row, best] > self.iou_threshold and int(model_output["labels"][best]) == label:
                total = total + ious[row, best] + scores[best]
        return total

    def __repr__(self) -> str:
        return (
            f"FasterRCNNBoxScoreTarget(labels={self.labels}, {self.bounding_boxes.shape[0]} boxes, "
            f"iou_threshold={self.iou_threshold})"
        )


class FinerWeightedTarget:
    """Finer-CAM's score: a class's logit minus the softmax-weighted logits of similar classes.

    ``y_main - alpha * sum_k softmax(y_comparisons)_k * y_k`` (differentiable through the softmax
    weights), as pytorch-grad-cam 1.5.x defines it; see :class:`~pytorch_grad_cam.finer_cam.FinerCAM`.

    Args:
        main_category: the explained class.
        comparison_categories: the classes it is compared against.
        alpha: the strength of the comparison.
    """

    def __init__(self, main_category: int, comparison_categories: Sequence[int], alpha: float) -> None:
        self.main_category = _category_index(main_category, "main_category")
        self.comparison_categories = [
            _category_index(category, "comparison_categories entries") for category in comparison_categories
        ]
        if not self.comparison_categories:
            raise ValueError("comparison_categories is empty; pass at least one class to compare against")
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"alpha must be a number; got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, model_output: Any) -> torch.Tensor:
        scores = _class_scores(model_output, self.main_category, self)
        for category in self.comparison_categories:
            _check_category(category, scores.shape[-1])
        others = scores[..., self.comparison_categories]
        weights = torch.softmax(others, dim=-1)
        return scores[..., self.main_category] - self.alpha * (weights * others).sum(dim=-1)

    def __repr__(self) -> str:
        return f"FinerWeightedTarget({self.main_category}, {self.comparison_categories}, alpha={self.alpha})"


class SimilarityToConceptTarget:
    """For an embedding model: the cosine similarity of the image's embedding to a concept's.

    ``cos(e, c) = <e, c> / (max(||e||, 1e-8) max(||c||, 1e-8))``, the embedding ``e`` being the
    per-image model output (flattened) and ``c`` the concept's embedding, e.g. the mean
    embedding of example images of the concept.

    Args:
        concept_features: the concept embedding, the size of one image's model output.
    """

    def __init__(self, concept_features: np.ndarray | torch.Tensor) -> None:
        features = torch.as_tensor(
            np.asarray(concept_features)
            if not isinstance(concept_features, torch.Tensor)
            else concept_features
        )
        if not features.is_floating_point() or features.numel() == 0:
            raise TypeError(
                f"concept_features must be a non-empty float vector; got dtype {features.dtype}, "
                f"shape {tuple(features.shape)}"
            )
        self.concept_features = features.detach().flatten()

    def __call__(self, model_output: Any) -> torch.Tensor:
        embedding = _scores(model_output, self, 1, "an embedding, a (D,) vector per sample").flatten()
        if embedding.shape != self.concept_features.shape:
            raise ValueError(
                f"the model output of one image has {embedding.numel()} values but concept_features has "
                f"{self.concept_features.numel()}; they must be embeddings of the same size"
            )
        concept = self.concept_features.to(device=embedding.device, dtype=embedding.dtype)
        return torch.nn.functional.cosine_similarity(embedding, concept, dim=0, eps=1e-8)

    def __repr__(self) -> str:
        return f"SimilarityToConceptTarget(concept of {self.concept_features.numel()} features)"
