"""Model outputs: walking their structure, splitting them per sample, scoring targets on them."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import torch


def map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """Apply ``fn`` to every tensor inside nested containers, keeping the structure and types.

    Tuples (named tuples too), lists, mappings (HuggingFace ``ModelOutput`` included) and
    dataclasses are walked; anything else is returned unchanged.
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        values = [map_tensors(fn, item) for item in obj]
        return tuple(values) if type(obj) is tuple else type(obj)(*values)
    if isinstance(obj, list):
        return [map_tensors(fn, item) for item in obj]
    if isinstance(obj, Mapping):
        mapped = {key: map_tensors(fn, value) for key, value in obj.items()}
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


def classifier_logits(outputs: Any) -> torch.Tensor:
    """The ``(B, num_classes)`` scores used when no targets are given.

    A tensor output is used as is; a mapping or dataclass output (HuggingFace) gives its ``logits``.
    """
    outputs = logits_of(outputs)
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        shape = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        raise ValueError(
            "targets=None picks each image's top class, which needs a classifier output of shape "
            f"(B, num_classes); the model returned {shape}. Pass targets=[...] (one per image)."
        )
    return outputs


def target_scores(
    targets: Sequence[Callable[[Any], torch.Tensor]], outputs: Any, batch_size: int
) -> torch.Tensor:
    """Evaluate each sample's target on that sample's output.

    Args:
        targets: one callable per sample.
        outputs: the model output for the batch.
        batch_size: the batch size.

    Returns:
        ``(B,)`` float32 scores.
    """
    batched = _classifier_scores(targets, outputs, batch_size)
    if batched is not None:
        return batched
    scores = []
    for index, target in enumerate(targets):
        score = target(sample_output(outputs, index, batch_size))
        if not isinstance(score, torch.Tensor):
            score = torch.as_tensor(score)
        if score.numel() != 1:
            raise ValueError(
                f"targets[{index}] ({target!r}) returned a tensor of shape {tuple(score.shape)}; a CAM "
                "target must return one scalar per sample"
            )
        scores.append(score.reshape(()).float())
    return torch.stack(scores)


def _classifier_scores(
    targets: Sequence[Callable[[Any], torch.Tensor]], outputs: Any, batch_size: int
) -> torch.Tensor | None:
    """The scores of :class:`ClassifierOutputTarget` targets read from the batch at once.

    The same numbers as calling each target on its sample (an index into each row of the
    ``(B, num_classes)`` logits), without a Python call per sample: AblationCAM scores thousands
    of ablated copies per image. None where the targets or the output are of another kind.
    """
    # model_targets builds on this module, so it is not imported back: a ClassifierOutputTarget can
    # only exist once model_targets is loaded, and then its class is looked up where it was loaded
    loaded = sys.modules.get("pytorch_grad_cam.utils.model_targets")
    plain = loaded.ClassifierOutputTarget if loaded is not None else None
    if len(targets) != batch_size or plain is None or not all(type(t) is plain for t in targets):
        return None
    logits = logits_of(outputs)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch_size:
        return None
    categories = [t.category for t in targets]
    for category in set(categories):
        targets[categories.index(category)](logits[0])  # the target's own range check and message
    index = torch.tensor(categories, device=logits.device)
    return logits[torch.arange(batch_size, device=logits.device), index].float()
