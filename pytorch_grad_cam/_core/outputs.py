"""Model outputs: walking their structure, splitting them per sample, scoring targets on them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import torch


def map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor inside nested containers, keeping the structure and types.

    Tuples (named tuples too), lists, mappings (HuggingFace ``ModelOutput`` included) and
    dataclasses are walked; anything else is returned unchanged.
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        values = [map_tensors(fn, item) for item in obj]
        if all(new is old for new, old in zip(values, obj)):
            return obj  # nothing inside changed (a torch.Size, a tuple of ints): the object itself
        return _rebuilt_sequence(obj, values)
    if isinstance(obj, Mapping):
        mapped = {key: map_tensors(fn, value) for key, value in obj.items()}
        if all(mapped[key] is value for key, value in obj.items()):
            return obj
        try:
            return type(obj)(**mapped)
        except TypeError:
            return mapped
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            field.name: map_tensors(fn, getattr(obj, field.name))
            for field in dataclasses.fields(obj)
            if field.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


def _rebuilt_sequence(obj: tuple | list, values: list) -> tuple | list:
    """``values`` in ``obj``'s type: a named tuple takes them as arguments, other tuple and list
    subclasses as one iterable; a type that takes neither gives a plain tuple or list."""
    kind = type(obj)
    if kind is tuple or kind is list:
        return kind(values)
    for build in (lambda: kind(*values), lambda: kind(values)):
        try:
            return build()
        except TypeError:
            continue
    return tuple(values) if isinstance(obj, tuple) else list(values)


def tensors_in(obj: Any) -> list[torch.Tensor]:
    """Every tensor inside nested containers, in :func:`map_tensors` order."""
    found: list[torch.Tensor] = []

    def collect(tensor: torch.Tensor) -> torch.Tensor:
        found.append(tensor)
        return tensor

    map_tensors(collect, obj)
    return found


def detach_outputs(outputs: Any) -> Any:
    """A copy of the output structure with every tensor detached from the graph."""
    return map_tensors(torch.Tensor.detach, outputs)


def sample_output(outputs: Any, index: int, batch_size: int) -> Any:
    """The model output of one sample: every tensor whose first axis is the batch, indexed.

    Tensors without a batch axis are passed through whole. A list of one mapping per image (the
    ``[{"boxes": ..., "labels": ..., "scores": ...}, ...]`` of torchvision's detection models)
    gives the image's own mapping.

    Args:
        outputs: what the model returned for the batch.
        index: the sample.
        batch_size: the batch size, to recognise batch axes.
    """

    def pick(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() >= 1 and tensor.shape[0] == batch_size:
            return tensor[index]
        return tensor

    if (
        isinstance(outputs, list)
        and len(outputs) == batch_size
        and all(isinstance(o, Mapping) for o in outputs)
    ):
        # One dict per image, as torchvision's detection models return.
        return outputs[index]
    if not tensors_in(outputs):
        raise TypeError(
            f"the model returned {type(outputs).__name__} with no tensor in it; a CAM needs a tensor, "
            "a tuple/list/dict of tensors, or a dataclass such as HuggingFace's ModelOutput"
        )
    return map_tensors(pick, outputs)


def logits_of(outputs: Any) -> Any:
    """The ``logits`` of a mapping or dataclass output (HuggingFace), else the output itself."""
    if isinstance(outputs, Mapping) and "logits" in outputs:
        return outputs["logits"]
    if dataclasses.is_dataclass(outputs) and any(f.name == "logits" for f in dataclasses.fields(outputs)):
        return outputs.logits
    return outputs


def _children(obj: Any) -> list[Any]:
    """The elements of a container in order (a ``logits`` entry first), or [] for anything else."""
    if isinstance(obj, (tuple, list)):
        return list(obj)
    if isinstance(obj, Mapping):
        values = list(obj.values())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = [getattr(obj, field.name) for field in dataclasses.fields(obj)]
    else:
        return []
    logits = logits_of(obj)
    return values if logits is obj else [logits, *(v for v in values if v is not logits)]


def find_scores(
    outputs: Any,
    dims: int,
    *,
    batch_size: int | None = None,
    reader: str = "reading the scores",
    hint: str = "",
) -> torch.Tensor:
    """The scores tensor in a model output, by the one rule every score reader here uses.

    The rule, for outputs that hold several things (a ``(logits, aux)`` tuple, GoogLeNet's and
    Inception's named tuples in training mode, a dict, HuggingFace's ``ModelOutput``):

    1. A tensor is the scores itself, whatever its shape (the reader checks the shape).
    2. A mapping or dataclass with a ``logits`` entry: that entry.
    3. Otherwise the first tensor with ``dims`` dimensions (and ``batch_size`` rows, if given),
       depth first through tuples, lists, mapping values and dataclass fields, in order (a nested
       container's ``logits`` entry first). For a batch's output, class scores are the first
       ``(B, K)`` tensor; for one sample's output (what a target receives), the first ``(K,)``.

    A target callable can always pick another element itself (``lambda output: output[1][k]``).

    Args:
        outputs: a model output (a batch's, or one sample's).
        dims: the dimensions of the tensor sought: 2 for a batch's class scores, 1 for one
            sample's, 3 for one sample's ``(N, H, W)`` segmentation scores.
        batch_size: the rows a qualifying tensor must have (its first axis), if known.
        reader: who reads the scores, for the error message.
        hint: what to do instead, appended to the error message.

    Raises:
        TypeError: the output holds no tensor at all.
        ValueError: no tensor qualifies; the message lists the shapes found.
    """
    root = logits_of(outputs)
    if isinstance(root, torch.Tensor):
        return root
    pending = _children(root)
    while pending:
        item = pending.pop(0)
        if not isinstance(item, torch.Tensor):
            pending[:0] = _children(item)
        elif item.dim() == dims and (batch_size is None or item.shape[0] == batch_size):
            return item
    shapes = [tuple(t.shape) for t in tensors_in(outputs)]
    if not shapes:
        raise TypeError(
            f"{reader}: the model returned {type(outputs).__name__} with no tensor in it; the scores must be "
            "a tensor, or a tuple/list/dict/dataclass (HuggingFace's ModelOutput) holding one"
        )
    rows = "" if batch_size is None else f" and {batch_size} rows"
    raise ValueError(
        f"{reader}: found no tensor of {dims} dimension{'s' if dims != 1 else ''}{rows} in the model output "
        f"({type(outputs).__name__} holding tensors of shapes {shapes}). The rule for outputs holding "
        "several things: a 'logits' entry first, else the first such tensor in order, depth first."
        + (f" {hint}" if hint else "")
    )


def classifier_logits(outputs: Any, *, batch_size: int | None = None) -> torch.Tensor:
    """The ``(B, num_classes)`` scores used when no targets are given (:func:`find_scores`, 2-D).

    A tensor output is used as is; a mapping or dataclass output (HuggingFace) gives its
    ``logits``; a tuple, list or other dict its first ``(B, K)`` tensor. Scores ``(B, 1, K)`` (one
    pooling query) are read as ``(B, K)``.
    """
    hint = (
        "targets=None picks each image's top class, which needs a classifier output of shape "
        "(B, num_classes). Pass targets=[...] (one per image)."
    )
    logits = find_scores(outputs, 2, batch_size=batch_size, reader="targets=None", hint=hint)
    if logits.dim() == 3 and logits.shape[1] == 1:
        logits = logits[:, 0]  # one pooling query's scores (HuggingFace VideoPrism: (B, 1, K))
    if logits.dim() != 2:
        raise ValueError(
            "targets=None picks each image's top class, which needs a classifier output of shape "
            f"(B, num_classes); the model returned {tuple(logits.shape)}. Pass targets=[...] (one per image)."
        )
    return logits
