"""The capture's autograd pieces: a linear layer that computes only its input's gradient, and the tap.

:class:`_InputGradLinear` keeps the autograd graph lean (no layer input saved for a weight gradient
no method needs); :class:`_TapFunction` hands each attention's gradient to a callback as the
backward passes it (see :mod:`~pytorch_grad_cam.attention.capture`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

#: ``tap(index, grad)``: the gradient ``(B', heads, L, S)`` of attention record ``index``.
Tap = Callable[[int, torch.Tensor], None]

_LINEAR_NAMES = ("input", "weight", "bias")


class _InputGradLinear(torch.autograd.Function):
    """``F.linear`` whose backward computes only the input's gradient ``grad @ W``.

    The input is not saved (autograd's linear keeps it for the weight's gradient). When the
    incoming gradient is the same for every token (every row along the second-last axis: the
    backward of a mean over tokens, as LeGrad's block score takes, reaching an MLP's last layer),
    ``grad @ W`` is computed for one row and repeated: the same numbers for a token-count-th of the
    work.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        weight = weight.to(grad.dtype)
        if grad.dim() >= 2 and grad.shape[-2] > 1:
            first = grad[..., :1, :]
            if torch.equal(grad, first.expand_as(grad)):
                return first.matmul(weight).expand(*grad.shape[:-1], weight.shape[1]).contiguous(), None, None
        return grad.matmul(weight), None, None


def _linear(args: Sequence[Any], kwargs: dict) -> torch.Tensor:
    bound = {**dict(zip(_LINEAR_NAMES, args)), **kwargs}
    x, weight, bias = bound["input"], bound["weight"].detach(), bound.get("bias")
    bias = bias.detach() if isinstance(bias, torch.Tensor) else None
    if isinstance(x, torch.Tensor) and x.requires_grad and type(x) is torch.Tensor:
        return _InputGradLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def _compact(value: torch.Tensor) -> torch.Tensor:
    """``value`` copied out of a larger storage (a slice of a fused q/k/v projection) when only it
    will be saved for backward: the rest of that storage can then be freed."""
    if value.requires_grad or value.untyped_storage().nbytes() <= value.numel() * value.element_size():
        return value
    return value.contiguous() if not value.is_contiguous() else value.clone()


class _TapFunction(torch.autograd.Function):
    """Identity on the probabilities; its backward hands their gradient to a :data:`Tap`."""

    @staticmethod
    def forward(ctx: Any, probs: torch.Tensor, anchor: torch.Tensor, index: int, tap: Tap) -> torch.Tensor:
        ctx.index, ctx.tap, ctx.anchor_dtype = index, tap, anchor.dtype
        return probs.view_as(probs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        ctx.tap(ctx.index, grad)
        return grad, torch.zeros((), dtype=ctx.anchor_dtype, device=grad.device), None, None
