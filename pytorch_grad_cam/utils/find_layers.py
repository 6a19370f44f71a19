"""Finding and replacing submodules: the 1.5.x helpers, for users who edit their own model.

The CAM classes never call the editing helpers (they leave the model as it is); a user may, for example to
list every ``nn.Conv2d`` as a candidate target layer, or to put a copy of a layer in place.
:func:`find_target_layer` (the automatic choice of the CAMs) is re-exported here.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn


def find_layer_predicate_recursive(
    model: nn.Module, predicate: Callable[[nn.Module], bool]
) -> list[nn.Module]:
    """Every submodule below ``model`` (``model`` itself excluded) for which ``predicate`` is true.

    Depth first, a module before its own children, children in registration order (as
    :meth:`torch.nn.Module.children` gives them).
    """
    found: list[nn.Module] = []
    for child in model.children():
        if predicate(child):
            found.append(child)
        found += find_layer_predicate_recursive(child, predicate)
    return found


def find_layer_types_recursive(model: nn.Module, layer_types: Sequence[type]) -> list[nn.Module]:
    """Every submodule whose exact type is one of ``layer_types`` (subclasses do not count).

    Example: ``find_layer_types_recursive(model, [nn.Conv2d])``.
    """
    wanted = tuple(layer_types)
    return find_layer_predicate_recursive(model, lambda module: type(module) in wanted)


def replace_layer_recursive(model: nn.Module, old_layer: nn.Module, new_layer: nn.Module) -> bool:
    """Put ``new_layer`` where ``old_layer`` (that very module) is registered, at its first place.

    Returns:
        whether ``old_layer`` was found.
    """
    for name, child in model.named_children():
        if child is old_layer:
            setattr(model, name, new_layer)
            return True
        if replace_layer_recursive(child, old_layer, new_layer):
            return True
    return False


def replace_all_layer_type_recursive(model: nn.Module, old_layer_type: type, new_layer: nn.Module) -> None:
    """Put ``new_layer`` in place of every submodule that is an instance of ``old_layer_type``.

    The same ``new_layer`` object goes to every place; the replaced modules' children are not
    visited, nor is ``new_layer``.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, old_layer_type):
            setattr(model, name, new_layer)
        else:
            replace_all_layer_type_recursive(child, old_layer_type, new_layer)


# The automatic choice (defined in :mod:`pytorch_grad_cam.layer_search`), offered here as well.
from pytorch_grad_cam.layer_search import LayerChoice, find_target_layer  # noqa: E402

__all__ = [
    "LayerChoice",
    "find_layer_predicate_recursive",
    "find_layer_types_recursive",
    "find_target_layer",
    "replace_all_layer_type_recursive",
    "replace_layer_recursive",
]
