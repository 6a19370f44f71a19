"""Explainers: ``explain(model, images, classes) -> maps``, one form for CAM methods and baselines.

The sanity checks run an explainer on copies of the model (with layers randomised), so a CAM's
target layers are held by name and looked up in whichever model it is given.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.metrics.baselines import centre_gaussian, edge_maps, random_maps
from pytorch_grad_cam.registry import get_method
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

#: ``explain(model, images (B, C, H, W), classes (B,) ints) -> (B, H, W) float maps``
Explainer = Callable[[nn.Module, torch.Tensor, Sequence[int]], torch.Tensor]


def layer_names(model: nn.Module, layers: nn.Module | Sequence[nn.Module]) -> list[str]:
    """The names under ``model`` of ``layers`` (modules of it)."""
    layers = [layers] if isinstance(layers, nn.Module) else list(layers)
    names = {id(module): name for name, module in model.named_modules()}
    missing = [type(layer).__name__ for layer in layers if id(layer) not in names]
    if missing:
        raise ValueError(f"target_layers must be modules of model; not found: {', '.join(missing)}")
    return [names[id(layer)] for layer in layers]


def cam_explainer(
    model: nn.Module,
    method: str | type[BaseCAM],
    target_layers: nn.Module | Sequence[nn.Module],
    *,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Explainer:
    """A CAM method as an explainer of ``model`` and of any copy of it.

    Args:
        model: the model whose ``target_layers`` these are (only their names are kept).
        method: a registry name (``"gradcam"``) or a :class:`BaseCAM` subclass.
        target_layers, reshape_transform: as for :class:`BaseCAM`.
    """
    cam_class = get_method(method) if isinstance(method, str) else method
    if not (isinstance(cam_class, type) and issubclass(cam_class, BaseCAM)):
        raise TypeError(f"method must be a registry name or a BaseCAM subclass; got {method!r}")
    names = layer_names(model, target_layers)

    def explain(module: nn.Module, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        modules = dict(module.named_modules())
        cam = cam_class(module, [modules[name] for name in names], reshape_transform=reshape_transform)
        targets = [ClassifierOutputTarget(int(k)) for k in classes]
        return cam.compute(images, targets=targets)

    return explain


def baseline_explainer(
    name: str,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
) -> Explainer:
    """A baseline of :mod:`~pytorch_grad_cam.metrics.baselines` as an explainer (it ignores the model).

    Args:
        name: ``"random"``, ``"centre"`` or ``"edges"``.
        mean, std: the inputs' normalisation (the edge map undoes it).
        seed: the random map's.
    """

    def explain(module: nn.Module, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        if name == "random":
            return random_maps(images.shape[0], size, seed=seed)
        if name == "centre":
            return centre_gaussian(images.shape[0], size)
        return edge_maps(images, mean=mean, std=std)

    if name not in ("random", "centre", "edges"):
        raise ValueError(f"name must be 'random', 'centre' or 'edges'; got {name!r}")
    return explain
