"""The target layer of both commands (one photo, ``--image-dir``): the user's ``--target-layer PATH``,
else the model family's default path, else (or with ``--target-layer auto``) the layer that
:func:`pytorch_grad_cam.layer_search.find_target_layer` picks; with one line saying which and why."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from pytorch_grad_cam.cli.checks import find_layer
from pytorch_grad_cam.cli.models import LoadedModel
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.layer_search import find_target_layer

__all__ = ["AUTO", "ChosenLayer", "choose_target_layer", "is_auto"]

#: ``--target-layer auto``: the automatic choice, spelled out.
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class ChosenLayer:
    """The layer a command explains.

    Attributes:
        layer: the module.
        name: its qualified name in the model.
        reshape_transform: turns its output into ``(B, C, h, w)`` (None: it is one already).
        reason: one line: which layer and why.
    """

    layer: nn.Module
    name: str
    reshape_transform: Callable[..., torch.Tensor] | None
    reason: str


def is_auto(path: str | None) -> bool:
    """Whether a ``--target-layer`` value asks for the automatic choice (omitted, or ``auto``)."""
    return path is None or path.strip().lower() == AUTO


def choose_target_layer(loaded: LoadedModel, path: str | None, x: torch.Tensor) -> ChosenLayer:
    """The target layer for ``--target-layer path`` (None: not given).

    A path given by the user always wins. Omitted, a model family's default path is used (the
    layers the README documents per family); with no default (``file.py:callable`` factories,
    ``timm:NAME``) or with ``--target-layer auto``, the layer search runs on ``x``.

    Args:
        loaded: the ``--model``.
        path: the ``--target-layer`` text, or None.
        x: ``(1, C, H, W)`` an input of the model (on its device), for the layer search.

    Raises:
        UsageError: a path that leads nowhere, or a model where the search finds no layer.
    """
    if not is_auto(path):
        layer, name = find_layer(loaded.model, path)
        return ChosenLayer(
            layer,
            name,
            loaded.reshape_transform,
            f"target layer {name} ({type(layer).__name__}): --target-layer",
        )
    if path is None and loaded.target_layer is not None:
        layer, name = find_layer(loaded.model, loaded.target_layer)
        return ChosenLayer(
            layer,
            name,
            loaded.reshape_transform,
            f"target layer {name} ({type(layer).__name__}): the default of --model {loaded.name} "
            "(--target-layer auto searches for one)",
        )
    try:
        choice = find_target_layer(loaded.model, x)
    except ValueError as error:
        raise UsageError(
            f"--model {loaded.name}: no target layer found automatically ({' '.join(str(error).split())}); "
            "pass --target-layer PATH"
        ) from None
    return ChosenLayer(choice.layer, choice.name, choice.reshape_transform, choice.reason)
