"""Capture of target-layer outputs, and their gradients, for one forward pass.

The capture is a context manager: forward hooks are registered on entry and removed on exit
(also on an exception), and they record only forwards run by the thread that entered the
context, so a ``model(x)`` in another thread is never captured.

With ``track_gradients=True`` the forward should run under ``torch.no_grad()``. The first target
layer to fire switches grad mode on (grad mode is thread-local and the enclosing ``no_grad``
restores it on exit), and its output is replaced by a fresh leaf. The network before the target
layers therefore builds no autograd graph, and :meth:`ActivationsAndGradients.gradients` walks back
only through the network after them, computing no parameter gradients at all.
"""

from __future__ import annotations

import numbers
import threading
from typing import Any, Callable, Sequence, Union

import torch
from torch import nn

from pytorch_grad_cam._core.outputs import map_tensors, tensors_in

_MISSING = object()

#: Which call of a target layer is explained (see :class:`ActivationsAndGradients`): None (the
#: layer must run once), a 0-based call index, or ``"all"`` (every call, for FullGrad).
LayerCall = Union[int, str, None]

ALL_CALLS = "all"


def as_layer_calls(layer_call: object, count: int | None = None) -> list[int | None] | int | None:
    """Check a CAM's ``layer_call`` option: None, a call index ``>= 0``, or one of those per layer.

    Args:
        layer_call: the option as given.
        count: the number of target layers, where known (a list must have one entry per layer).

    Returns:
        the option, a list where one entry per layer was given.

    Raises:
        TypeError: not an int, None, or a list/tuple of those.
        ValueError: a negative index, or a list of the wrong length.
    """

    def one(value: object, name: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{name} must be None or the 0-based index of the target layer's call to explain; "
                f"got {value!r}"
            )
        if value < 0:
            raise ValueError(f"{name} must be >= 0 (the first call is 0); got {value}")
        return int(value)

    if isinstance(layer_call, (list, tuple)):
        values = [one(value, f"layer_call[{i}]") for i, value in enumerate(layer_call)]
        if count is not None and len(values) != count:
            raise ValueError(
                f"layer_call has {len(values)} entries but there are {count} target layers; pass one per "
                "layer (None for a layer that runs once), or a single int"
            )
        return values
    return one(layer_call, "layer_call")


def check_layer_calls(counts: Sequence[int], calls: Sequence[int | None], labels: Sequence[str]) -> None:
    """Raise a ValueError if a layer ran more than once without a chosen call, or fewer times than chosen.

    Args:
        counts: per target layer, how often it ran in the forward.
        calls: per target layer, the chosen call (None: it must run once).
        labels: per target layer, how to name it (``"target_layers[0] (Sequential)"``).
    """
    for count, call, label in zip(counts, calls, labels):
        times = "once" if count == 1 else f"{count} times"
        if call is None and count > 1:
            raise ValueError(
                f"{label} ran {times} in one forward pass (a shared block, a recurrent cell, a module used "
                f"at several scales), and a CAM explains one call of it: pass layer_call=i "
                f"(0 <= i < {count}) to choose which, or pick a module that runs once"
            )
        if call is not None and call >= count > 0:
            raise ValueError(f"layer_call={call} asks for call {call} (0-based), but {label} ran {times}")


class ActivationsAndGradients:
    """Records what the target layers output during the forwards run inside the context.

    Args:
        model: the network (kept for the 1.5.x ``capture(x)`` call form).
        target_layers: the modules whose outputs are captured.
        reshape_transform: kept for the 1.5.x constructor signature; the capture itself stores
            raw outputs and :class:`~pytorch_grad_cam.base_cam.BaseCAM` applies the transform.
        track_gradients: make the captured outputs leaves of a graph that starts at the first
            target layer, so that :meth:`gradients` can be called after the forward.
        calls: per target layer, which of its calls in the context is captured: None (the first;
            the caller checks :attr:`call_counts`, see :func:`check_layer_calls`), a 0-based
            index, or ``"all"`` (a list of every call's output). A single value applies to all.

    Attributes:
        captured: per target layer, its chosen call's output (tensors, or the layer's
            tuple/list/dict of tensors; a list of those for ``"all"``), or ``None`` for a layer
            that never ran (or ran fewer times than the chosen call).
        call_counts: per target layer, how many times it ran in the context.
        first_captured: the index of the target layer captured first in the context (with
            ``track_gradients``, gradients are on from its output to the end of the forward), or None.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        reshape_transform: Callable[[Any], torch.Tensor] | None = None,
        *,
        track_gradients: bool = True,
        calls: LayerCall | Sequence[LayerCall] = None,
    ) -> None:
        self.model = model
        self.target_layers = list(target_layers)
        self.reshape_transform = reshape_transform
        self.track_gradients = track_gradients
        self.calls: list[LayerCall] = (
            list(calls) if isinstance(calls, (list, tuple)) else [calls] * len(self.target_layers)
        )
        self.call_counts = [0] * len(self.target_layers)
        self.first_captured: int | None = None
        self._captured: list[Any] = [_MISSING] * len(self.target_layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._thread: int | None = None

    def __enter__(self) -> ActivationsAndGradients:
        self._captured = [_MISSING] * len(self.target_layers)
        self.call_counts = [0] * len(self.target_layers)
        self.first_captured = None
        self._thread = threading.get_ident()
        try:
            for index, layer in enumerate(self.target_layers):
                self._handles.append(layer.register_forward_hook(self._make_hook(index)))
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __call__(self, x: torch.Tensor) -> Any:
        """Run the model (the 1.5.x form ``outputs = activations_and_grads(x)``)."""
        return self.model(x)

    def release(self) -> None:
        """Remove every hook this capture registered; safe to call more than once."""
        while self._handles:
            self._handles.pop().remove()
        self._thread = None

    def _make_hook(self, index: int) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            if threading.get_ident() != self._thread:
                return None
            call = self.call_counts[index]
            self.call_counts[index] += 1
            wanted = self.calls[index]
            if wanted != ALL_CALLS and call != (wanted or 0):
                return None  # another call of the layer: counted only
            if self.first_captured is None:
                self.first_captured = index
            if self.track_gradients:
                torch.set_grad_enabled(True)
                kept = map_tensors(_graph_start, output)
                # The network continues on a copy: an in-place op after the layer (ReLU(inplace),
                # x += identity) then changes the copy, never the captured value.
                returned = map_tensors(torch.Tensor.clone, kept)
            else:
                kept, returned = map_tensors(lambda t: t.detach().clone(), output), None
            if wanted == ALL_CALLS:
                self._captured[index] = [*(() if call == 0 else self._captured[index]), kept]
            else:
                self._captured[index] = kept
            return returned

        return hook

    @property
    def captured(self) -> list[Any]:
        return [None if value is _MISSING else value for value in self._captured]

    def missing_layers(self) -> list[int]:
        """Indices of target layers that did not run in the context."""
        return [i for i, value in enumerate(self._captured) if value is _MISSING]

    def gradients(self, score: torch.Tensor, *, create_graph: bool = False) -> list[Any]:
        """Gradients of ``score`` with respect to each captured output, in its structure.

        Only the captured outputs are differentiated (``torch.autograd.grad``): nothing is
        written to any ``.grad``. An output the score does not depend on gets zeros.

        Args:
            score: a scalar computed from the model output of the captured forward.
            create_graph: keep the graph of the gradients themselves, for second derivatives
                (a Hessian-vector product); the graph after the target layers is then kept too.

        Returns:
            per target layer, gradients shaped like :attr:`captured`.
        """
        captured = self.captured
        leaves = [t for value in captured for t in tensors_in(value) if t.requires_grad]
        if score.requires_grad and leaves:
            grads = torch.autograd.grad(score, leaves, allow_unused=True, create_graph=create_graph)
        else:
            grads = (None,) * len(leaves)
        by_id = {id(leaf): grad for leaf, grad in zip(leaves, grads)}

        def grad_of(tensor: torch.Tensor) -> torch.Tensor:
            grad = by_id.get(id(tensor))
            return torch.zeros_like(tensor) if grad is None else grad

        return [map_tensors(grad_of, value) for value in captured]


def _graph_start(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself if it is already in the graph, else a fresh leaf holding its value."""
    if tensor.requires_grad or not tensor.is_floating_point():
        return tensor
    return tensor.detach().requires_grad_(True)
