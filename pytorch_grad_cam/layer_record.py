"""One hooked forward for the layer search: every module's output, layout, call count and order,
and which modules compute an attention (their insides are never explained)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pytorch_grad_cam.utils.outputs import map_tensors, tensors_in
from pytorch_grad_cam.utils.token_layout import Layout, read_layout

_ATTENTION_FUNCTIONS = (F.scaled_dot_product_attention, F.multi_head_attention_forward)
_SOFTMAX_FUNCTIONS = (F.softmax, torch.softmax, torch.Tensor.softmax)


@dataclasses.dataclass
class Record:
    """One module call of the recorded forward."""

    module: nn.Module
    name: str
    order: int
    stack: tuple[int, ...]
    output: Any
    returned: Any
    layout: Layout | None
    input_ids: tuple[int, ...] = ()
    #: the version counter of the read tensor when the module returned it (in-place ops bump it)
    version: int = 0


class _AttentionSpotter(TorchFunctionMode):
    """Marks the innermost running module when an attention product or softmax is computed."""

    def __init__(self, stack: list[nn.Module], marked: set[int], root: nn.Module) -> None:
        super().__init__()
        self.stack, self.marked, self.root = stack, marked, root

    def __torch_function__(self, func: Callable, types: Any, args: Sequence = (), kwargs: Any = None) -> Any:
        if self.stack and self.stack[-1] is not self.root:
            pairwise = (
                func in _SOFTMAX_FUNCTIONS
                and args
                and isinstance(args[0], torch.Tensor)
                and (args[0].dim() >= 4 or (args[0].dim() == 3 and args[0].shape[-1] == args[0].shape[-2]))
            )
            if func in _ATTENTION_FUNCTIONS or pairwise:
                self.marked.add(id(self.stack[-1]))
        return func(*args, **(kwargs or {}))


def record_forward(
    model: nn.Module, x: torch.Tensor, prefix: int | None
) -> tuple[Any, list[Record], dict[int, int], set[int]]:
    """Run the model once with hooks on every module.

    Returns:
        the model's outputs, one :class:`Record` per module call in the order the calls
        finished, the number of calls per module id, and the ids of the modules that computed an
        attention (an attention function, or a softmax over pairwise scores, ran innermost in them).
    """
    records: list[Record] = []
    calls: dict[int, int] = {}
    stack: list[nn.Module] = []
    marked: set[int] = {id(m) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    thread = threading.get_ident()
    handles = []

    def pre(module: nn.Module, args: Any) -> None:
        if threading.get_ident() == thread:
            stack.append(module)

    def make_post(name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def post(module: nn.Module, args: Any, output: Any) -> Any:
            if threading.get_ident() != thread:
                return None
            if stack and stack[-1] is module:
                stack.pop()
            calls[id(module)] = calls.get(id(module), 0) + 1
            layout = read_layout(output, x.shape, prefix)
            returned = None
            if layout is not None:
                # the network goes on with a copy, so later in-place ops leave `output` as it was
                returned = map_tensors(torch.Tensor.clone, output)
            inputs = tuple(id(t) for t in tensors_in(args))
            order = len(records) + 1
            version = 0 if layout is None else tensors_in(output)[layout.element]._version
            stack_ids = tuple(id(m) for m in stack)
            records.append(Record(module, name, order, stack_ids, output, returned, layout, inputs, version))
            return returned

        return post

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(make_post(name)))
        with _AttentionSpotter(stack, marked, model):
            outputs = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, records, calls, marked
