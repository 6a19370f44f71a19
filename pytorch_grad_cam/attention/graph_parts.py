"""The capture's autograd pieces: a linear layer that computes only its input's gradient, an MLP
activation that saves its layer's narrow input, and the tap.

:class:`_InputGradLinear` keeps the autograd graph lean (no layer input saved for a weight gradient
no method needs); :class:`_RecomputedGelu` saves an MLP's ``D``-wide input instead of its
hidden activation (``4D`` wide on a ViT) and recomputes the hidden in backward, a chunk of tokens at
a time; :class:`_TapFunction` hands each attention's gradient to a callback as the backward passes
it (see :mod:`~pytorch_grad_cam.attention.capture`).
"""

from __future__ import annotations

import weakref
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
    ``grad @ W`` is computed for one row and passed on repeated (a broadcast view, not a copy): the
    same numbers for a token-count-th of the work and memory.

    The node keeps a weak reference to the input (``linear_input``) and its version counter at the
    call (``linear_version``), and saves the weight and bias, so that an activation applied to the
    output can take the input's place (:func:`_lean_gelu`) while the input is unchanged.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight, bias)
        ctx.linear_input = weakref.ref(x)
        ctx.linear_version = x._version
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        weight = ctx.saved_tensors[0].to(grad.dtype)
        if grad.dim() >= 2 and grad.shape[-2] > 1:
            first = grad[..., :1, :]
            if torch.equal(grad, first.expand_as(grad)):
                return first.matmul(weight).expand(*grad.shape[:-1], weight.shape[1]), None, None
        return grad.matmul(weight), None, None


#: The fewest rows (images x tokens) a chunk of :class:`_RecomputedGelu`'s backward holds: on a CPU
#: the recomputation of vit_b_16's hidden (768 -> 3072) took 11.0 ms in chunks of 49 rows and 7.9
#: ms whole; 128 rows and more run at full speed.
_MIN_ROWS = 128


class _RecomputedGelu(torch.autograd.Function):
    """``gelu(hidden)`` for ``hidden = F.linear(x, weight, bias)`` (an MLP's first layer, run by
    :class:`_InputGradLinear`), differentiated with respect to ``x``.

    Saves ``x`` (``(..., N, D)``) rather than ``hidden`` (``(..., N, H)``, ``H = 4D`` on a ViT, which
    ``F.gelu``'s own backward keeps). The backward recomputes ``hidden`` a chunk of tokens (second-
    last axis) at a time and returns ``x``'s gradient ``(grad * gelu'(hidden)) @ weight`` chunk by
    chunk, each chunk's hidden about ``x``'s size (at least :data:`_MIN_ROWS` rows): one more
    first-layer forward of time; the graph holds ``x`` instead of ``hidden`` and the backward never
    holds a whole ``hidden``-sized tensor (with a gradient repeated along the tokens, as
    :class:`_InputGradLinear` passes it, not even the incoming gradient).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        approximate: str,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight, bias)
        ctx.approximate, ctx.hidden_dtype = approximate, hidden.dtype
        return F.gelu(hidden, approximate=approximate)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        x, weight, bias = ctx.saved_tensors
        dtype = ctx.hidden_dtype
        weight = weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        rows = x if x.dim() >= 2 else x[None]  # (..., N, D)
        grad = grad if x.dim() >= 2 else grad[None]
        below = torch.empty(rows.shape, dtype=dtype, device=grad.device)
        tokens, width = rows.shape[-2], rows.shape[-1]
        images = rows.numel() // max(1, tokens * width)
        # tokens per chunk: a chunk's hidden (H wide) about the size of x (D wide), but at least
        # _MIN_ROWS rows (a small batch's matrix products run slower in smaller pieces)
        chunk = max(1, tokens * width // max(1, weight.shape[0]), -(-_MIN_ROWS // max(1, images)))
        for start in range(0, tokens, chunk):
            part = slice(start, start + chunk)
            hidden = F.linear(rows[..., part, :].to(dtype), weight, bias)
            # gelu'(hidden) * grad written over the hidden: one hidden-sized chunk at a time
            step = torch.ops.aten.gelu_backward.grad_input(
                grad[..., part, :].to(dtype), hidden, approximate=ctx.approximate, grad_input=hidden
            )
            below[..., part, :] = step.matmul(weight)
            del hidden, step
        return below.view(x.shape), None, None, None, None


def _linear(args: Sequence[Any], kwargs: dict) -> torch.Tensor:
    bound = {**dict(zip(_LINEAR_NAMES, args)), **kwargs}
    x, weight, bias = bound["input"], bound["weight"].detach(), bound.get("bias")
    bias = bias.detach() if isinstance(bias, torch.Tensor) else None
    if isinstance(x, torch.Tensor) and x.requires_grad and type(x) is torch.Tensor:
        return _InputGradLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


_GELU_NAMES = ("input", "approximate")


def _lean_gelu(args: Sequence[Any], kwargs: dict) -> torch.Tensor | None:
    """``F.gelu`` applied to an :class:`_InputGradLinear`'s output, as :class:`_RecomputedGelu`
    from that linear's input; None (run ``F.gelu`` itself) for any other input, or when the linear's
    input is gone or was changed in place since (the recomputed hidden would not be this one)."""
    bound = {"approximate": "none", **dict(zip(_GELU_NAMES, args)), **kwargs}
    hidden = bound["input"]
    if not isinstance(hidden, torch.Tensor) or type(hidden) is not torch.Tensor:
        return None
    node = hidden.grad_fn
    if not isinstance(node, _InputGradLinear._backward_cls):
        return None
    x = node.linear_input()
    if x is None or not x.requires_grad or x.shape[:-1] != hidden.shape[:-1]:
        return None
    if x._version != node.linear_version:
        return None
    weight, bias = node.saved_tensors
    return _RecomputedGelu.apply(x, hidden.detach(), weight, bias, bound["approximate"])


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
