"""Finer-CAM."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

#: The ranks of the comparison classes when none are given: the three classes whose scores are
#: closest to the explained class's.
DEFAULT_COMPARISON_CATEGORIES = (1, 2, 3)


def finer_targets(
    logits: torch.Tensor,
    alpha: float = 1.0,
    comparison_categories: Sequence[int] = DEFAULT_COMPARISON_CATEGORIES,
    target_idx: int | None = None,
) -> list[FinerWeightedTarget]:
    """The Finer-CAM target of each image.

    The explained class is ``target_idx`` or the image's top class; the classes are ranked by
    how close their scores are to its score (``|y_k - y_main|``, ties in class order, rank 0 being
    the class itself) and those at ranks ``comparison_categories`` are compared against.

    Args:
        logits: ``(B, num_classes)`` scores.
        alpha: the comparison strength.
        comparison_categories: the ranks of the comparison classes.
        target_idx: the class to explain in every image, or None.

    Returns:
        one :class:`~pytorch_grad_cam.utils.model_targets.FinerWeightedTarget` per image.
    """
    num_classes = logits.shape[-1]
    ranks = list(comparison_categories)
    if max(ranks) >= num_classes:
        raise ValueError(
            f"comparison_categories {ranks} need at least {max(ranks) + 1} classes; "
            f"the model has {num_classes}"
        )
    if target_idx is not None and target_idx >= num_classes:
        raise ValueError(f"target_idx {target_idx} is out of range for a model with {num_classes} classes")
    targets = []
    for scores in logits.detach().float():
        main = int(scores.argmax()) if target_idx is None else target_idx
        closeness = torch.argsort((scores - scores[main]).abs(), stable=True)
        targets.append(FinerWeightedTarget(main, [int(closeness[r]) for r in ranks], alpha))
    return targets


class FinerCAM(BaseCAM):
    """Finer-CAM: explain what sets a class apart from the classes the model confuses it with.

    Zhang, Gu, Chowdhury, Mai, Carlyn, Berger-Wolf, Su and Chao, "Finer-CAM: Spotting the
    Difference Reveals Finer Details for Visual Explanation", CVPR 2025,
    https://arxiv.org/abs/2501.11309

    A base CAM method (GradCAM by default) explains the score
    ``Y = y_c - alpha * sum_k s_k y_k``
    (:class:`~pytorch_grad_cam.utils.model_targets.FinerWeightedTarget`) instead of ``y_c``; with
    GradCAM, ``CAM = relu(sum_c mean_ij(dY/dA_cij) A_c)``. ``c`` is the top class (or
    ``target_idx``), the ``k`` are the classes whose scores rank ``comparison_categories``
    (default 1, 2, 3) in closeness to ``y_c`` (rank 0 is ``c`` itself), and ``s = softmax(y_k)``
    over them. Features shared with the similar classes cancel out. With ``targets`` given, they
    are explained as they are (the base method alone), as pytorch-grad-cam 1.5.x does.

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        base_method: the CAM class that explains the weighted score, e.g. ``GradCAM``,
            ``HiResCAM`` or ``LayerCAM``. Its own constructor options take their defaults.
    """

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        base_method: type[BaseCAM] = GradCAM,
        **options: Any,
    ) -> None:
        if not (isinstance(base_method, type) and issubclass(base_method, BaseCAM)):
            raise TypeError(f"base_method must be a CAM class such as GradCAM; got {base_method!r}")
        if issubclass(base_method, FinerCAM) or base_method._cams is not BaseCAM._cams:
            raise ValueError(
                f"base_method={base_method.__name__} cannot explain a Finer-CAM score; pass a method that "
                "maps the target layers' activations, e.g. GradCAM, HiResCAM or LayerCAM"
            )
        super().__init__(model, *args, **options)
        self.base_cam = base_method(
            model,
            self.target_layers or None,
            reshape_transform=self.reshape_transform,
            device=self.device,
            layer_call=self.layer_call,
        )
        self.uses_gradients = base_method.uses_gradients
        #: the options of the call in progress (alpha, comparison ranks, target class)
        self._call_options = (1.0, DEFAULT_COMPARISON_CATEGORIES, None)
        self.always_eigen = base_method.always_eigen

    def _maps(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None,
        aug_smooth: bool,
        eigen_smooth: bool,
        *,
        alpha: float = 1.0,
        comparison_categories: Sequence[int] = DEFAULT_COMPARISON_CATEGORIES,
        target_idx: int | None = None,
        target_category: Sequence[int] | int | None = None,
    ) -> torch.Tensor:
        """One call with Finer-CAM's call options (``cam(x, alpha=...)``; the other arguments as
        :meth:`BaseCAM.__call__`).

        Args:
            alpha: how much of the comparison classes' score is subtracted.
            comparison_categories: the ranks (in closeness of score to the explained class, 0
                being that class) of the classes compared against.
            target_idx: the class to explain in every image; None for each image's top class.
        """
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"alpha must be a number; got {alpha!r}")
        if isinstance(comparison_categories, (str, bytes)) or not isinstance(comparison_categories, Sequence):
            raise TypeError(f"comparison_categories must be a list of ranks; got {comparison_categories!r}")
        ranks = tuple(comparison_categories)
        if not ranks or any(
            isinstance(r, bool) or not isinstance(r, numbers.Integral) or r < 0 for r in ranks
        ):
            raise ValueError(f"comparison_categories must be a non-empty list of ranks >= 0; got {ranks!r}")
        if target_idx is not None and (
            isinstance(target_idx, bool) or not isinstance(target_idx, numbers.Integral) or target_idx < 0
        ):
            raise ValueError(f"target_idx must be None or a class index >= 0; got {target_idx!r}")
        self._call_options = (
            float(alpha),
            tuple(int(r) for r in ranks),
            None if target_idx is None else int(target_idx),
        )
        return super()._maps(input_tensor, targets, aug_smooth, eigen_smooth, target_category=target_category)

    def choose_target_layers(self, input_tensor: torch.Tensor, targets: list[Target] | None) -> None:
        super().choose_target_layers(input_tensor, targets)
        self.base_cam.target_layers, self.base_cam.reshape_transform = (
            self.target_layers,
            self.reshape_transform,
        )

    def default_targets(self, outputs: Any) -> list[Target]:
        """Per image, the Finer-CAM score of its top class (or ``target_idx``)."""
        alpha, ranks, target_idx = self._call_options
        return finer_targets(classifier_logits(outputs), alpha, ranks, target_idx)

    def differentiate(self, capture: ActivationsAndGradients, score: torch.Tensor) -> list[Any]:
        return self.base_cam.differentiate(capture, score)

    def layer_maps(
        self,
        input_tensor: torch.Tensor,
        targets: list[Target] | None,
        activations: list[torch.Tensor],
        gradients: list[torch.Tensor | None],
        eigen_smooth: bool,
    ) -> list[torch.Tensor]:
        return self.base_cam.layer_maps(input_tensor, targets, activations, gradients, eigen_smooth)

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.base_cam.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
