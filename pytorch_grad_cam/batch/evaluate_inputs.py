"""What an evaluation reads: the methods, the layer sets, the annotations and a group's masks."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.arguments import method_class
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.errors import ConfigError
from pytorch_grad_cam.metrics.annotations import Annotation, Annotations, read_annotations
from pytorch_grad_cam.metrics.explainers import layer_names


def chosen_methods(
    methods: str | type[BaseCAM] | Sequence[str | type[BaseCAM]],
) -> list[tuple[type[BaseCAM], str]]:
    """Registry names (a list, or ``"a,b"``) or classes as ``(class, name)`` pairs."""
    if isinstance(methods, str):
        methods = [name.strip() for name in methods.split(",") if name.strip()]
    elif not isinstance(methods, (list, tuple)):
        methods = [methods]
    if not methods:
        raise ConfigError("methods must name at least one method")
    return [method_class(method) for method in methods]


def layer_sets(model: nn.Module, target_layers: Any) -> dict[str, list[nn.Module]]:
    """``{label: layers}``: one set (label ``""``) or a mapping of several."""
    if isinstance(target_layers, Mapping):
        sets = {str(k): [v] if isinstance(v, nn.Module) else list(v) for k, v in target_layers.items()}
    else:
        sets = {"": [target_layers] if isinstance(target_layers, nn.Module) else list(target_layers)}
    for layers in sets.values():
        try:
            layer_names(model, layers)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return sets


def annotation_source(
    annotations: Any,
) -> tuple[Annotations | Callable[[Any], Annotation | None] | None, str | None]:
    if annotations is None:
        return None, None
    if isinstance(annotations, (str, os.PathLike)):
        try:
            return read_annotations(annotations), str(annotations)
        except (OSError, ValueError) as error:
            raise ConfigError(f"annotations: {error}") from None
    if isinstance(annotations, Annotations):
        return annotations, annotations.source
    if isinstance(annotations, Mapping):
        return Annotations(annotations), "code"
    if callable(annotations):
        return annotations, "callable"
    raise ConfigError(
        f"annotations must be a path, a mapping name -> Annotation or a callable; got {annotations!r}"
    )


def group_masks(
    annotations: Any, group: list[Sample], names: Sequence[str], size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The group's boxes' and objects' masks at the input size (empty for an image without annotation)."""
    if annotations is None:
        return None
    boxes, objects = [], []
    for sample in group:
        if isinstance(annotations, Annotations):
            found = annotations.find(names[sample.index])
        else:
            found = annotations(sample.meta)
        if found is None:
            empty = torch.zeros(size, dtype=torch.bool)
            boxes.append(empty)
            objects.append(empty)
            continue
        box_mask, mask = found.masks(size, image_size=tuple(sample.cam_size))
        boxes.append(box_mask)
        objects.append(mask)
    return torch.stack(boxes), torch.stack(objects)
