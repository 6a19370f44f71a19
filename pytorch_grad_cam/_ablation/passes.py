"""AblationCAM's single forward passes: the model run once with a layer's (or its pool's) output replaced.

Each pass registers its hooks for one model call, acts only in the calling thread, and removes the
hooks in ``finally``. Also here: which pooling modules work channel by channel, whether a model
output is a batch of one row per copy, and which errors mean that memory ran out.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch
from torch import nn

from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam._core.outputs import tensors_in

#: Pooling modules that work channel by channel: where one of them takes the target layer's output,
#: the pooled route builds ablated copies of its (smaller) output instead of the layer's. Max pools
#: qualify only without ``return_indices``.
_AVG_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
)
_MAX_POOLS = (
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
)
PER_CHANNEL_POOLS: tuple[type[nn.Module], ...] = _AVG_POOLS + _MAX_POOLS

#: The exception types torch (and Python) raise when an allocation fails. ``torch.cuda.OutOfMemoryError``
#: exists in every torch this package supports; ``torch.OutOfMemoryError`` (any device, the same
#: class as the CUDA one where both exist) only in newer releases, hence the lookup.
OUT_OF_MEMORY_ERRORS: tuple[type[BaseException], ...] = (
    MemoryError,
    torch.cuda.OutOfMemoryError,
    vars(torch).get("OutOfMemoryError", torch.cuda.OutOfMemoryError),
)

#: Messages of allocation failures that torch raises as a plain ``RuntimeError``, with no type of
#: their own, so the message is all there is to go by: the CPU allocator
#: ("DefaultCPUAllocator: can't allocate memory", still untyped in torch 2.14), a CUDA runtime call
#: that fails outside the caching allocator ("CUDA error: out of memory") and the MPS allocator of
#: releases before ``torch.OutOfMemoryError`` ("MPS backend out of memory").
UNTYPED_OUT_OF_MEMORY_MESSAGES = (
    "can't allocate memory",
    "CUDA error: out of memory",
    "MPS backend out of memory",
)


class NotABatch(Exception):
    """The model output does not have one row per ablated copy (or the pool did not take the copies)."""


def is_per_channel_pool(module: nn.Module) -> bool:
    """Whether ``module`` is one of :data:`PER_CHANNEL_POOLS` returning a single tensor."""
    if isinstance(module, _MAX_POOLS):
        return not module.return_indices
    return isinstance(module, PER_CHANNEL_POOLS)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (device or host).

    By type (:data:`OUT_OF_MEMORY_ERRORS`); by message only for the failures torch raises as a plain
    ``RuntimeError`` (:data:`UNTYPED_OUT_OF_MEMORY_MESSAGES`). Another route would only fail again,
    so AblationCAM raises these instead of trying the next route.
    """
    if isinstance(error, OUT_OF_MEMORY_ERRORS):
        return True
    if not isinstance(error, RuntimeError):
        return False
    message = str(error)
    return any(text in message for text in UNTYPED_OUT_OF_MEMORY_MESSAGES)


def check_batch(outputs: Any, copies: int, strict: bool = False) -> None:
    """Raise :class:`NotABatch` unless every tensor of the model output has a row per copy.

    A single copy of a batch-1 input is the model's ordinary call: checked only if ``strict``.
    """
    if copies > 1 or strict:
        shapes = [tuple(t.shape) for t in tensors_in(outputs)]
        if not shapes or any(len(shape) == 0 or shape[0] != copies for shape in shapes):
            raise NotABatch(f"the model output has shapes {shapes}, not a batch of {copies}")


def forward_with_copies(
    model: nn.Module,
    layer: nn.Module,
    model_input: torch.Tensor,
    copies: Callable[[Any], Any],
    *,
    name: str,
    watch: list[nn.Module] | None = None,
    call: int = 0,
    check_calls: Callable[[int], None] | None = None,
) -> Any:
    """``model(model_input)`` with ``layer``'s output replaced by ``copies(output)``.

    Args:
        model: the user's model (left as it was).
        layer: the target layer.
        model_input: ``(N, ...)`` what the model runs on (``N`` may be 0: the layer still runs).
        copies: the layer's output -> the batch of ablated copies the rest of the network runs on.
        name: the layer's name in the error raised when it does not run.
        watch: if given, the per-channel pooling modules (:func:`is_per_channel_pool`) that take the
            copies as their input are appended to it.
        call: which call of ``layer`` in the forward is replaced (0-based; the others run as they are).
        check_calls: called with how often ``layer`` ran, before the check that it ran at all.

    Returns:
        the model's output.

    Raises:
        ValueError: ``layer`` did not run (or not ``call + 1`` times).
    """
    thread = threading.get_ident()
    returned: list[Any] = []
    ran: list[bool] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        if threading.get_ident() != thread:
            return None
        ran.append(True)
        if len(ran) - 1 != call:
            return None  # another call of the layer (layer_call): not ablated
        returned.append(copies(output))
        return returned[-1]

    def see(module: nn.Module, inputs: Any) -> None:
        if threading.get_ident() == thread and returned and inputs and inputs[0] is returned[-1]:
            watch.append(module)

    handles = [layer.register_forward_hook(hook)]
    if watch is not None:
        handles += [
            module.register_forward_pre_hook(see)
            for module in model.modules()
            if module is not layer and is_per_channel_pool(module)
        ]
    try:
        outputs = model(model_input)
    finally:
        for handle in handles:
            handle.remove()
    if check_calls is not None and ran:
        check_calls(len(ran))
    if not returned:
        raise ValueError(f"{name} did not run in the ablation forward pass")
    return outputs


def forward_with_pooled_copies(
    model: nn.Module,
    layer: nn.Module,
    pool: nn.Module,
    model_input: torch.Tensor,
    copies: torch.Tensor,
    *,
    call: int = 0,
    check_calls: Callable[[int], None] | None = None,
) -> Any:
    """``model(model_input)`` with ``pool``'s output replaced by ``copies`` where its input is
    ``layer``'s output.

    Args:
        copies: ``(K, C, *p)`` the pooled ablated copies
            (:func:`~pytorch_grad_cam._core.perturbation.ablate_pooled`).
        call, check_calls: as for :func:`forward_with_copies` (only that call's output is followed).

    Raises:
        NotABatch: the pool did not take the layer's output.
    """
    thread = threading.get_ident()
    marked: list[Any] = []
    fired: list[bool] = []
    ran: list[bool] = []

    def mark(module: nn.Module, inputs: Any, output: Any) -> None:
        if threading.get_ident() == thread:
            ran.append(True)
            if len(ran) - 1 == call:  # only the chosen call's output (layer_call) feeds the copies
                marked.append(output)

    def substitute(module: nn.Module, inputs: Any, output: Any) -> Any:
        if threading.get_ident() != thread or not marked or not inputs or inputs[0] is not marked[-1]:
            return None
        fired.append(True)
        return copies

    handles = [layer.register_forward_hook(mark), pool.register_forward_hook(substitute)]
    try:
        outputs = model(model_input)
    finally:
        for handle in handles:
            handle.remove()
    if check_calls is not None and ran:
        check_calls(len(ran))
    if not fired:
        raise NotABatch("the pool did not take the target layer's output")
    return outputs


def pool_unablated_and_ablated(
    pool: nn.Module, output: torch.Tensor, channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool of a layer output, and of that output with every channel ablated (one call, batch 2).

    Args:
        pool: a per-channel pool.
        output: ``(1, C, *s)`` the unablated layer output.
        channels: ``C``.

    Returns:
        ``(pooled, pooled_ablated)``, each ``(1, C, *p)``.

    Raises:
        NotABatch: the pool did not return a ``(2, C, ...)`` tensor.
    """
    values = P.ablation_values(output).reshape(-1, *([1] * (output.dim() - 1)))
    both = pool(torch.cat([output, values.expand_as(output)]))
    if not isinstance(both, torch.Tensor) or both.shape[:2] != (2, channels):
        raise NotABatch(f"the pool returned {type(both).__name__}, not a (2, C, ...) tensor")
    return both[:1], both[1:]
