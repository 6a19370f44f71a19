"""The layer search's cache: per model, its chosen layer by input shape, dtype, device and targets."""

from __future__ import annotations

import dataclasses
import threading
import weakref
from typing import Any, Callable, Sequence

import torch
from torch import nn

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


@dataclasses.dataclass(frozen=True)
class _Entry:
    layer: weakref.ref
    fields: dict[str, Any]


#: model -> key -> entry; a model that is garbage collected takes its entries with it
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Entry]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _targets_key(targets: Sequence[Callable] | None) -> tuple | None:
    """What of the targets the cached choice depends on: the gradient rule reads their score.

    Classifier targets count by class and kind; any other target by its type (targets of one type
    share a choice).
    """
    if targets is None:
        return None
    return tuple(
        (type(t), t.category) if isinstance(t, ClassifierOutputTarget) else (type(t),) for t in targets
    )


def _key(model: nn.Module, x: torch.Tensor, targets: Sequence[Callable] | None) -> tuple:
    return (
        tuple(x.shape[1:]),
        x.dtype,
        x.device,
        tuple(id(m) for m in model.modules()),
        _targets_key(targets),
    )


def lookup(
    model: nn.Module, input_tensor: torch.Tensor, targets: Sequence[Callable] | None
) -> tuple[nn.Module, dict[str, Any]] | None:
    """The cached layer and the rest of its choice's fields, or None (none cached, or the layer is gone)."""
    with _CACHE_LOCK:
        entry = _CACHE.get(model, {}).get(_key(model, input_tensor, targets))
    if entry is None:
        return None
    layer = entry.layer()
    return None if layer is None else (layer, entry.fields)


def store(
    model: nn.Module,
    input_tensor: torch.Tensor,
    targets: Sequence[Callable] | None,
    layer: nn.Module,
    fields: dict[str, Any],
) -> None:
    """Remember a choice (the layer weakly, so the cache never keeps a module alive)."""
    with _CACHE_LOCK:
        _CACHE.setdefault(model, {})[_key(model, input_tensor, targets)] = _Entry(weakref.ref(layer), fields)


def clear() -> None:
    """Forget every cached choice."""
    with _CACHE_LOCK:
        _CACHE.clear()
