"""Several model inputs: their checks, the image inputs among them, and the model run with one of them varied.

A CAM call's ``input_tensor`` may be a tuple/list (the model's positional arguments) or a dict (its
keyword arguments) of inputs that share the batch axis (docs/multi-input.md). The image inputs are
the floating tensors of rank 3-5 (``(B, C, L)``, ``(B, C, H, W)``, ``(B, C, D, H, W)``); the others
(``input_ids``, an attention mask, metadata ``(B, F)``) are passed along unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Mapping

import torch
from torch import nn

from pytorch_grad_cam._core.patch_inputs import as_image_inputs


@dataclasses.dataclass
class ModelInputs:
    """The inputs of one call, as the model takes them.

    Attributes:
        values: every input by key (positions 0, 1, ... for positional inputs, names for keywords).
        keyword: whether the model takes them as keyword arguments.
        sequence: ``tuple`` or ``list`` for positional inputs (the structure of the returned maps).
        encoders: per input given in another form than the one explained (flattened patches, held
            in ``values`` as their image: ``_core/patch_inputs.py``), the function that makes the
            model's input of it.
    """

    values: dict[Hashable, Any]
    keyword: bool
    sequence: type = tuple
    encoders: dict[Hashable, Callable[[torch.Tensor], torch.Tensor]] = dataclasses.field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """The images' batch size (integer inputs such as a text batch may have their own)."""
        return self.values[self.image_keys()[0]].shape[0]

    def image_keys(self) -> list[Hashable]:
        """The keys of the image inputs (floating tensors of rank 3 to 5), in order."""
        return [k for k, v in self.values.items() if is_image_like(v)]

    def label(self, key: Hashable) -> str:
        """How a message names one input: ``input_tensor[1]`` or ``input_tensor['pixel_values']``."""
        return f"input_tensor[{key!r}]"

    def run(self, model: nn.Module, replaced: Mapping[Hashable, Any] | None = None) -> Any:
        """``model(*inputs)`` or ``model(**inputs)``, with the inputs in ``replaced`` swapped in."""
        values = {**self.values, **(replaced or {})}
        values = {k: self.encoders[k](v) if k in self.encoders else v for k, v in values.items()}
        if self.keyword:
            return model(**values)
        return model(*values.values())

    def first(self, *, integers_apart: bool = False) -> ModelInputs:
        """The inputs of the batch's first sample (every tensor's ``[:1]``): what the layer search runs.

        Args:
            integers_apart: keep the integer tensors whole (a batch of their own, as CLIP's texts,
                even when there are as many texts as images).
        """
        batch = self.batch_size

        def per_sample(v: Any) -> bool:
            return (
                isinstance(v, torch.Tensor)
                and v.shape[0] == batch
                and (v.is_floating_point() or not integers_apart)
            )

        values = {k: v[:1] if per_sample(v) else v for k, v in self.values.items()}
        return dataclasses.replace(self, values=values)

    def returned(self, maps: Mapping[Hashable, Any]) -> Any:
        """The call's result in the inputs' structure: a dict of the explained keys, or a
        tuple/list with None at inputs without a map."""
        if self.keyword:
            return {k: maps[k] for k in self.values if k in maps}
        return self.sequence(maps.get(k) for k in self.values)


def is_image_like(value: object) -> bool:
    """A floating tensor of rank 3 to 5: an input a CAM can draw a map on."""
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() in (3, 4, 5)


def is_several(input_tensor: object) -> bool:
    """Whether a call's ``input_tensor`` is a tuple/list/dict of inputs rather than one tensor."""
    return isinstance(input_tensor, (tuple, list, Mapping)) and not isinstance(input_tensor, torch.Tensor)


def as_model_inputs(input_tensor: tuple | list | Mapping) -> ModelInputs:
    """Check several inputs: at least one tensor, one batch size, at least one image input, finite.

    Raises:
        TypeError: a dict key that is not a string, or no tensor at all.
        ValueError: empty, inputs with different batch sizes (both named), no image-like input, or
            an image input with NaN/inf values.
    """
    if not input_tensor:
        raise ValueError("input_tensor is an empty tuple/list/dict; pass the model's inputs")
    if isinstance(input_tensor, Mapping):
        for key in input_tensor:
            if not isinstance(key, str):
                raise TypeError(
                    f"input_tensor as a dict holds the model's keyword arguments; key {key!r} is not a string"
                )
        values, encoders = as_image_inputs(dict(input_tensor))
        inputs = ModelInputs(values, keyword=True, encoders=encoders)
    else:
        inputs = ModelInputs(dict(enumerate(input_tensor)), keyword=False, sequence=type(input_tensor))
        if inputs.sequence not in (tuple, list):
            inputs.sequence = tuple
    tensors = {k: v for k, v in inputs.values.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise TypeError("input_tensor holds no torch.Tensor; pass the model's inputs as tensors")
    for key, value in tensors.items():
        if value.dim() == 0:
            raise ValueError(f"{inputs.label(key)} is a scalar; every input needs the batch axis first")
    images = inputs.image_keys()
    if not images:
        shapes = ", ".join(f"{inputs.label(k)} {tuple(v.shape)} {v.dtype}" for k, v in tensors.items())
        raise ValueError(
            "none of the inputs is an image a CAM can draw on (a floating tensor (B, C, H, W), "
            f"(B, C, D, H, W) or (B, C, L)): {shapes}"
        )
    first = images[0]
    batch = inputs.values[first].shape[0]
    for key, value in tensors.items():
        # integer inputs (token ids, their attention mask) may be a batch of their own: CLIP's T texts
        if value.shape[0] != batch and (value.is_floating_point() or key in images):
            raise ValueError(
                f"{inputs.label(key)} has batch size {value.shape[0]} but {inputs.label(first)} has "
                f"{batch}; every floating input must share the batch axis (its first)"
            )
    if batch == 0:
        raise ValueError("input_tensor has an empty batch")
    for key in images:
        if not bool(torch.isfinite(inputs.values[key]).all()):
            raise ValueError(f"{inputs.label(key)} contains NaN or inf values")
    return inputs


def moved(inputs: ModelInputs, device: torch.device, dtype: torch.dtype | None) -> ModelInputs:
    """The inputs on ``device``; floating tensors in the model's floating ``dtype``."""

    def one(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_floating_point() and dtype is not None:
            return value.to(device=device, dtype=dtype)
        return value.to(device=device)

    return dataclasses.replace(inputs, values={k: one(v) for k, v in inputs.values.items()})


class OneInputVaried(nn.Module):
    """The user's model as a function of one of its inputs, the others held fixed.

    Lets the one-input machinery (the capture, the layer search, the targets) explain one image
    input of a model with several: ``OneInputVaried(model, inputs, key)(x)`` is
    ``model(...)`` with ``x`` in place of input ``key``. The model is held as a child and not changed.
    """

    def __init__(self, model: nn.Module, inputs: ModelInputs, key: Hashable) -> None:
        super().__init__()
        self.model = model
        self._inputs = inputs
        self._key = key

    def forward(self, x: torch.Tensor) -> Any:
        return self._inputs.run(self.model, {self._key: x})
