"""One hooked ``no_grad`` forward for the layer search: every module's layout, whether its map varies,
which recorded maps it reads, its call count and order, and which modules compute an attention.

Nothing of the forward is kept: each hook reads what the rule needs from the module's output when
the module returns (its layout and shape, whether its positions differ) and links it to the
modules whose maps it reads by tensor identity while those tensors are alive (checked with a weak
reference, so a reused ``id`` never links two unrelated tensors). The forward therefore holds what
the model's own ``no_grad`` forward holds.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pytorch_grad_cam._core.outputs import tensors_in
from pytorch_grad_cam.layer_search.layouts import (
    CHANNELS_FIRST,
    Layout,
    LayoutTransform,
    carries_spatial_information,
    read_layout,
)

_ATTENTION_FUNCTIONS = (F.scaled_dot_product_attention, F.multi_head_attention_forward)
_SOFTMAX_FUNCTIONS = (F.softmax, torch.softmax, torch.Tensor.softmax)
#: Functions that apply a learned weight (whatever tensor it is passed as): no lineage passes.
_WEIGHTED_FUNCTIONS = frozenset(
    ("linear", "bilinear", "embedding", "batch_norm", "layer_norm", "group_norm", "instance_norm")
    + tuple(f"conv{d}d" for d in (1, 2, 3))
    + tuple(f"conv_transpose{d}d" for d in (1, 2, 3))
)


@dataclasses.dataclass
class Record:
    """One module call of the recorded forward (``index``: its position in the record list)."""

    module: nn.Module
    name: str
    order: int
    stack: tuple[int, ...]
    layout: Layout | None
    #: the shape of the tensor read as a map (() without a layout)
    shape: tuple[int, ...] = ()
    #: whether that map differs between grid positions (:func:`carries_spatial_information`)
    varies: bool = False
    #: indices of the records (with a layout) whose returned map this call read as an input
    sources: tuple[int, ...] = ()
    #: the record (with a layout) that returned the very tensor this call returned, unchanged
    #: since, and ran inside this call (a ``Sequential`` passing on its last child's map), or None
    same_as: int | None = None
    #: the record whose very map this call returned as its own, unchanged, from its input (a
    #: ``Dropout`` in eval mode, an ``Identity``), or None
    passes_on: int | None = None
    #: whether the model's own forward returned this call's map, or a class-score map it is made of
    #: (see :func:`class_maps`): it is what is explained
    explained: bool = False
    #: the records whose maps this call's map comes from through parameter-free operations only,
    #: itself included (resizing, activation, pooling, arithmetic: :class:`_Lineage`)
    lineage: frozenset[int] = frozenset()
    #: whether the output is a single tensor (not a tuple, list, dict or ``ModelOutput``)
    single_tensor: bool = False
    #: the shape of the output's first tensor, for messages (None: no tensor)
    first_shape: tuple[int, ...] | None = None


class _Lineage:
    """Which recorded maps a live tensor comes from through parameter-free operations only.

    A torch function with no ``nn.Parameter`` among its arguments passes on the union of its tensor
    arguments' lineages to its results (an interpolation, an activation, a sum, a pooling); one
    with a parameter (a convolution, a linear layer, a norm's affine) starts none.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, frozenset[int]]] = {}

    def of(self, tensor: torch.Tensor) -> frozenset[int]:
        entry = self._by_id.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return frozenset()
        return entry[1]

    def set(self, tensor: torch.Tensor, lineage: frozenset[int]) -> None:
        self._by_id[id(tensor)] = (weakref.ref(tensor), lineage)

    def passed(self, func: Callable, args: Sequence, kwargs: Any, result: Any) -> None:
        if not self._by_id or getattr(func, "__name__", "") in _WEIGHTED_FUNCTIONS:
            return
        lineage: frozenset[int] = frozenset()
        for value in (*args, *(kwargs or {}).values()):
            for tensor in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(tensor, nn.Parameter):
                    return
                if isinstance(tensor, torch.Tensor):
                    lineage = lineage | self.of(tensor)
        if not lineage:
            return
        for tensor in result if isinstance(result, (list, tuple)) else (result,):
            if isinstance(tensor, torch.Tensor):
                self.set(tensor, lineage)


class _AttentionSpotter(TorchFunctionMode):
    """Marks the innermost running module when an attention product or softmax is computed, and
    passes the recorded maps' lineage through every torch function (:class:`_Lineage`)."""

    def __init__(self, stack: list[nn.Module], marked: set[int], root: nn.Module, lineage: _Lineage) -> None:
        super().__init__()
        self.stack, self.marked, self.root, self.lineage = stack, marked, root, lineage

    def __torch_function__(self, func: Callable, types: Any, args: Sequence = (), kwargs: Any = None) -> Any:
        result = self._spotted(func, args, kwargs)
        self.lineage.passed(func, args, kwargs, result)
        return result

    def _spotted(self, func: Callable, args: Sequence, kwargs: Any) -> Any:
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


def _unwatched() -> Any:
    """A context in which no torch function mode sees the torch calls made (a hook's own reads are not
    the model's; switching the mode off costs less than the mode passing on each call)."""
    return torch._C.DisableTorchFunction()


class _Producers:
    """Which record returned a live tensor (the latest one, so the outermost module passing it on)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, int, int]] = {}

    def find(self, tensor: torch.Tensor) -> tuple[int, int] | None:
        """``(record index, the tensor's version when returned)``, or None."""
        entry = self._by_id.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return None
        return entry[1], entry[2]

    def add(self, tensor: torch.Tensor, index: int) -> None:
        self._by_id[id(tensor)] = (weakref.ref(tensor), index, tensor._version)


def _varies(output: Any, layout: Layout, tensor: torch.Tensor, producer: tuple[Record, int] | None) -> bool:
    """Whether the map read from ``output`` differs between its positions: the producer's answer
    when ``tensor`` is the very map a recorded module returned, unchanged since and read alike (a
    container or a ``Dropout`` passing it on), else :func:`carries_spatial_information`."""
    if producer is not None:
        earlier, version = producer
        alike = (earlier.layout.kind, earlier.layout.grid, earlier.layout.prefix) == (
            layout.kind,
            layout.grid,
            layout.prefix,
        )
        if alike and version == tensor._version:
            return earlier.varies
    return carries_spatial_information(LayoutTransform(layout)(output))


def _linear_head(module: nn.Module) -> bool:
    """A per-position linear map: ``nn.Linear`` or a convolution with a kernel of one cell."""
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.modules.conv._ConvNd) and all(k == 1 for k in module.kernel_size)


def class_maps(records: list[Record], output: torch.Tensor, lineage: frozenset[int]) -> list[int]:
    """The records that are a class-score map of the model's output tensor ``output``.

    A record is one when its map reaches ``output`` through parameter-free operations only and
    has ``output``'s class count (``output.shape[1]``) as channels, and either ``output`` is
    dense (``(B, K, *grid)``: the map is the output up to resizing, activation or wrappers) or the
    map comes, through parameter-free operations, from a per-position linear head with those
    channels (VOLO's ``aux_head``, SqueezeNet's class convolution, pooled into ``(B, K)``); a
    dense output is read against channels-first maps only (returned ``(B, N, C)`` tokens with as
    many tokens as channels are no class map: SigLIP's 8x8 patches of width 64). A
    pooled feature map (an embedding network's ``(B, D)`` output) is not one. A one-channel map
    whose channel axis the output lacks is one too: a dense ``(B, *grid)`` output such as a depth
    map (HuggingFace GLPN's and DPT's ``predicted_depth``) is that map squeezed, up to resizing.
    """
    if output.dim() < 2:
        return []
    classes = output.shape[1]
    found = []
    for index in sorted(lineage):
        record = records[index]
        if record.layout is None:
            continue
        if record.layout.channels == 1 and len(record.shape) == output.dim() + 1:
            found.append(index)  # the output is this map squeezed
            continue
        if record.layout.channels != classes:
            continue
        heads = (records[i] for i in record.lineage)
        dense = output.dim() > 2 and record.layout.kind == CHANNELS_FIRST  # not (B, N, C) tokens
        if dense or any(_linear_head(r.module) and r.layout.channels == classes for r in heads):
            found.append(index)
    return found


def record_forward(
    model: nn.Module, x: torch.Tensor, prefix: int | None
) -> tuple[list[Record], dict[int, int], set[int]]:
    """Run the model once under ``no_grad`` with hooks on every module.

    Returns:
        one :class:`Record` per module call in the order the calls finished, the number of calls
        per module id, and the ids of the modules that computed an attention (an attention
        function, or a softmax over pairwise scores, ran innermost in them).
    """
    records: list[Record] = []
    calls: dict[int, int] = {}
    stack: list[nn.Module] = []
    pending: list[tuple[int, ...]] = []
    marked: set[int] = {id(m) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    producers = _Producers()
    lineage = _Lineage()
    spotter = _AttentionSpotter(stack, marked, model, lineage)
    thread = threading.get_ident()
    handles = []

    def pre(module: nn.Module, args: Any) -> None:
        if threading.get_ident() == thread:
            stack.append(module)
            # read before the module runs: an in-place child must not pass for the input's producer
            with _unwatched():
                found = [producers.find(t) for t in tensors_in(args)]
            pending.append(tuple(f[0] for f in found if f is not None))

    def make_post(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def post(module: nn.Module, args: Any, output: Any) -> None:
            if threading.get_ident() != thread:
                return
            with _unwatched():
                read(module, name, output)

        return post

    def read(module: nn.Module, name: str, output: Any) -> None:
        """One module's record, read from its output as it returns."""
        if stack and stack[-1] is module:
            stack.pop()
        sources = pending.pop() if pending else ()
        calls[id(module)] = calls.get(id(module), 0) + 1
        record = Record(module, name, len(records) + 1, tuple(id(m) for m in stack), None, sources=sources)
        record.single_tensor = isinstance(output, torch.Tensor)
        found_tensors = tensors_in(output)
        record.first_shape = tuple(found_tensors[0].shape) if found_tensors else None
        if module is model:
            for tensor in tensors_in(output):
                found = producers.find(tensor)
                if found is not None:
                    records[found[0]].explained = True
                for index in class_maps(records, tensor, lineage.of(tensor)):
                    records[index].explained = True
        layout = read_layout(output, x.shape, prefix)
        if layout is not None:
            tensor = tensors_in(output)[layout.element]
            record.layout, record.shape = layout, tuple(tensor.shape)
            inner = producers.find(tensor)
            record.varies = _varies(
                output, layout, tensor, None if inner is None else (records[inner[0]], inner[1])
            )
            if inner is not None and id(module) in records[inner[0]].stack and inner[1] == tensor._version:
                record.same_as = inner[0]  # a child's map, not changed in place since
            elif inner is not None and inner[0] in sources and inner[1] == tensor._version:
                record.passes_on = inner[0]  # its input, returned as is
            producers.add(tensor, len(records))
            record.lineage = lineage.of(tensor) | {len(records)}
            lineage.set(tensor, record.lineage)
        records.append(record)

    try:
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(make_post(name)))
        with spotter, torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return records, calls, marked
