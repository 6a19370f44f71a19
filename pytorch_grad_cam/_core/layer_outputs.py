"""What a CAM reads of its target layers: the check that each ran as chosen, and each output (or
gradient) as the float32 ``(B, C, *s)`` map the math takes."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients, check_layer_calls
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.layer_search.layouts import token_grid


def check_reached(
    capture: ActivationsAndGradients, target_layers: Sequence[nn.Module], calls: Sequence[int | None]
) -> None:
    """Raise a ValueError if a target layer ran other than as chosen (``layer_call``) or never ran.

    Args:
        capture: the capture of the forward just run.
        target_layers: the layers.
        calls: per layer, the chosen call (None: it must run once).
    """
    labels = [f"target_layers[{i}] ({type(layer).__name__})" for i, layer in enumerate(target_layers)]
    check_layer_calls(capture.call_counts, calls, labels)
    missing = capture.missing_layers()
    if missing:
        names = ", ".join(f"target_layers[{i}] ({type(target_layers[i]).__name__})" for i in missing)
        raise ValueError(
            f"{names} never ran in the model's forward pass; pick modules the forward calls, "
            "e.g. [model.layer4[-1]]"
        )


def to_spatial(
    raw: Any,
    index: int,
    input_tensor: torch.Tensor,
    what: str,
    reshape_transform: Callable[[Any], torch.Tensor] | None,
) -> torch.Tensor:
    """A captured output (or its gradient) as a float32 ``(B, C, *s)`` tensor.

    Args:
        raw: the layer's output or its gradient, as the layer gave it.
        index: the layer's index in ``target_layers`` (for messages).
        input_tensor: ``(B, C_in, *S)`` the input (its rank and batch size are checked).
        what: ``"output"`` or ``"gradient"`` (for messages).
        reshape_transform: the CAM's transform, or None.

    Raises:
        NotApplicableError: the value is not a map of the input's rank and batch size.
    """
    value = raw
    if reshape_transform is not None:
        value = reshape_transform(raw.detach() if isinstance(raw, torch.Tensor) else raw)
    if not isinstance(value, torch.Tensor):
        source = "reshape_transform" if reshape_transform is not None else f"target_layers[{index}]"
        raise NotApplicableError(
            f"{source} gave a {type(value).__name__} as the layer {what}; a CAM needs a tensor of "
            "shape (B, C, h, w): pass a reshape_transform that turns the layer's output into one"
        )
    if value.dim() != input_tensor.dim() or value.shape[0] != input_tensor.shape[0]:
        raise NotApplicableError(
            f"target_layers[{index}] {what} has shape {tuple(value.shape)} but a CAM of input "
            f"{tuple(input_tensor.shape)} needs (B, C{', d' if input_tensor.dim() == 5 else ''}, h, w) "
            f"with the same batch size; {_token_advice(value, input_tensor, reshape_transform)}"
        )
    return value.detach().float()


def _token_advice(
    value: torch.Tensor, input_tensor: torch.Tensor, reshape_transform: Callable[[Any], torch.Tensor] | None
) -> str:
    """What to do about a layer output that is no map: the exact transform when it reads as tokens."""
    size = tuple(input_tensor.shape[2:])
    split = token_grid(value.shape[1], size) if reshape_transform is None and value.dim() == 3 else None
    if split is not None:
        prefix, (rows, cols), _ = split
        return (
            f"it reads as ViT-style tokens ({prefix} prefix + {rows}x{cols} patches): pass "
            f"reshape_transform=functools.partial(tokens_to_map, input_size={size}) (from "
            "pytorch_grad_cam.layer_search.layouts), or leave target_layers out and the library "
            "chooses the layer and its layout"
        )
    return (
        "for token outputs (ViT, Swin) pass reshape_transform, or leave target_layers out and the "
        "library chooses the layer and its layout"
    )
