"""Random-logit test: is the map for another class different from the map for the predicted class?

Sixt et al., "When Explanations Lie: Why Many Modified BP Attributions Fail", ICML 2020,
https://arxiv.org/abs/1912.09818 (the test quantus 0.6 calls ``RandomLogit``). A class-sensitive
method draws a different map for a different class: low similarity is good. Methods without targets
(EigenCAM) and image-only baselines give the same map twice (similarity 1) by construction.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from pytorch_grad_cam.metrics.explainers import Explainer
from pytorch_grad_cam.metrics.randomisation import predicted_classes
from pytorch_grad_cam.metrics.similarity import spearman, ssim


@dataclasses.dataclass
class RandomLogitResult:
    """Per image (``B``).

    Attributes:
        classes: the classes explained first (the top class unless given).
        others: the random other class of each image.
        ssim: ``(B,)`` float64 structural similarity of the two maps.
        spearman: ``(B,)`` float64 rank correlation of the two maps (0 where one is constant).
    """

    classes: list[int]
    others: list[int]
    ssim: torch.Tensor
    spearman: torch.Tensor


def other_classes(
    classes: Sequence[int], num_classes: int, *, seed: int = 0, keys: Sequence[int] | None = None
) -> list[int]:
    """For each class, one of the ``num_classes - 1`` others, uniformly.

    Image ``i``'s draw depends only on ``seed`` and ``keys[i]`` (default: ``i``), so an image keeps its
    other class in any batch when its key is its index in the dataset.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    keys = range(len(classes)) if keys is None else keys
    if len(keys) != len(classes):
        raise ValueError(f"keys must have one entry per class ({len(classes)}); got {len(keys)}")
    others = []
    for k, key in zip(classes, keys):
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(key))
        others.append((int(k) + int(torch.randint(1, num_classes, (1,), generator=generator))) % num_classes)
    return others


def random_logit(
    model: nn.Module,
    images: torch.Tensor,
    explain: Explainer,
    *,
    num_classes: int,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    keys: Sequence[int] | None = None,
    maps: torch.Tensor | None = None,
) -> RandomLogitResult:
    """Compare each image's map for its class with its map for a random other class.

    Cost: one forward pass (when ``classes`` is None) and two explanations (one given ``maps``).

    Args:
        model: the model (left as it was: the explanations are CAM calls).
        images: ``(B, C, H, W)`` inputs.
        explain: from :mod:`~pytorch_grad_cam.metrics.explainers`.
        num_classes: the number of classes the other one is drawn from.
        classes: the classes explained first; None: the model's top class.
        seed, keys: the draw of the other classes (:func:`other_classes`).
        maps: the ``(B, H, W)`` maps of ``classes``, when already computed.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor; got {getattr(images, 'shape', images)!r}")
    if classes is None:
        classes = predicted_classes(model, images)
    classes = [int(k) for k in classes]
    others = other_classes(classes, num_classes, seed=seed, keys=keys)
    first = (explain(model, images, classes) if maps is None else maps).detach().float().cpu()
    second = explain(model, images, others).detach().float().cpu()
    return RandomLogitResult(classes, others, ssim(first, second), spearman(first, second).nan_to_num(0.0))
