"""The automatic target layer: the rule of docs/layer-rule.md, applied in one recorded forward and
one partial backward of one image, cached; a known detector gets its default layers instead."""

from __future__ import annotations

import dataclasses
from typing import Callable, Collection, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.frames_first import FramesFirst, in_users_names, reads_frames_first
from pytorch_grad_cam._core.modes import model_in_eval_mode
from pytorch_grad_cam._core.seam import choose_seam
from pytorch_grad_cam._core.validation import rejected_input
from pytorch_grad_cam.layer_search import cache as layer_cache
from pytorch_grad_cam.layer_search.choice import LayerChoice
from pytorch_grad_cam.layer_search.gradient import GradientsAt, last_with_gradient, same_map
from pytorch_grad_cam.layer_search.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    TOKENS,
    Layout,
    LayoutTransform,
    known_prefix_tokens,
)
from pytorch_grad_cam.layer_search.record import Record, record_forward

#: Modules whose output is channels-first by definition (settles a (B, n, n, n) tie).
_CHANNELS_FIRST_TYPES = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.GroupNorm,
)


def _producer(record: Record, records: list[Record], eligible: set[int]) -> Record:
    """The record that produced the map ``record`` passed on unchanged, through any chain of
    modules returning their input as is (a ``Dropout`` in eval mode) and modules returning a
    child's map (:func:`~pytorch_grad_cam.layer_search.gradient.same_map`), alternating as in
    HuggingFace MobileViT's ASPP head."""
    for _ in range(len(records)):
        inner = same_map(record, records, eligible)
        if inner.passes_on is None or inner.passes_on not in eligible:
            return inner
        record = records[inner.passes_on]
    return record


def _settled(record: Record, records: list[Record], depth: int = 0) -> Layout | None:
    """A tied channels-first/-last reading settled by the module type, else by the module that
    produced its input tensor of the same shape (an elementwise module keeps its input's layout)."""
    layout = record.layout
    if not layout.ambiguous:
        return layout
    if layout.kind == TOKENS:
        return _settled_tokens(record, records)
    if isinstance(record.module, _CHANNELS_FIRST_TYPES):
        return dataclasses.replace(layout, ambiguous=False)
    if isinstance(record.module, nn.LayerNorm):
        shape = record.shape
        return dataclasses.replace(
            layout, kind=CHANNELS_LAST, grid=shape[1:-1], channels=shape[-1], ambiguous=False
        )
    for index in record.sources:
        source = records[index]
        if depth >= 64 or source.shape != record.shape:
            continue
        found = _settled(source, records, depth + 1)
        if found is not None:
            return dataclasses.replace(found, element=layout.element, channels=layout.channels)
    return None


def _settled_tokens(record: Record, records: list[Record]) -> Layout | None:
    """Video tokens that split into several ``t x h x w`` grids, settled by the nearest map before them
    (in forward order) whose grid is one of those and unambiguous: the block that returned its grid
    with its tokens (MViT's ``(x, thw)``), the patch embedding they were flattened from."""
    layout = record.layout
    for earlier in reversed(records[: record.order - 1]):
        found = earlier.layout
        if found is not None and not found.ambiguous and found.grid in layout.alternatives:
            return dataclasses.replace(layout, grid=found.grid, ambiguous=False, alternatives=())
    return None


def _settle_tie(record: Record, records: list[Record]) -> Layout:
    layout = _settled(record, records)
    if layout is not None:
        return layout
    if record.layout.kind == TOKENS:
        grids = " or ".join("x".join(map(str, g)) for g in record.layout.alternatives)
        raise ValueError(
            f"the rule cannot settle the grid of {record.name or 'the model'} "
            f"({type(record.module).__name__}): its {record.shape} tokens read as "
            f"{record.layout.prefix} prefix + {grids} (frames x rows x columns) alike, and no map before it "
            "has one of those grids; pass target_layers=[...] and reshape_transform=lambda t: "
            f"t[:, {record.layout.prefix}:].reshape(t.shape[0], frames, rows, columns, -1).movedim(-1, 1)"
        )
    raise ValueError(
        f"the rule cannot settle the layout of {record.name or 'the model'} "
        f"({type(record.module).__name__}): "
        f"its output {record.shape} reads as (B, C, h, w) and as (B, h, w, C) alike; pass "
        "target_layers=[...] and, for channels-last, reshape_transform=lambda t: t.permute(0, 3, 1, 2)"
    )


def _before_shared_module(chosen: Record, records: list[Record], calls: dict, eligible: set[int]) -> Record:
    """The block feeding ``chosen`` when ``chosen`` goes into a module run more than once (see the rule)."""
    own = chosen.order - 1
    if not any(calls[id(r.module)] > 1 and own in r.sources for r in records):
        return chosen
    current = chosen
    for _ in range(len(records)):
        if not current.sources or current.sources[0] not in eligible:
            return chosen
        source = records[current.sources[0]]
        if any(True for child in source.module.children() for _ in child.parameters()):
            return source  # a block (a child with parameters), not a padded conv or a norm
        current = source
    return chosen


def _one(items: Sequence[Callable] | None, index: int) -> list[Callable] | None:
    return None if items is None else list(items)[index : index + 1]


@dataclasses.dataclass
class _Candidates:
    """What one recorded forward gives the rule: every record, call counts, the eligible records,
    the ids of the modules that computed an attention."""

    records: list[Record]
    calls: dict[int, int]
    eligible: list[Record]
    marked: set[int] = dataclasses.field(default_factory=set)

    @property
    def blank(self) -> bool:
        """No eligible map differs between its positions (a blank image)."""
        return not any(r.varies for r in self.eligible)


def _candidates(
    model: nn.Module, x: torch.Tensor, prefix: int | None, among: frozenset[int] | None = None
) -> _Candidates:
    """Rules 1-3 on one ``no_grad`` recorded forward of ``x`` (only modules whose id is in ``among``,
    when given: those on the path of the explained input of a model with several)."""
    try:
        records, calls, marked = record_forward(model, x.detach(), prefix)
    except Exception as error:
        raise rejected_input(x, error) from error
    if not records:
        raise ValueError("the model ran no submodule; pass target_layers=[...] explicitly")
    # the model's own output is what is explained: neither the model is a target layer nor a
    # module whose map is the very tensor the model's forward returned (a wrapped network's)
    aligned = [r for r in records if r.layout is not None and r.module is not model and not r.explained]
    once = [r for r in aligned if calls[id(r.module)] == 1]
    eligible = [r for r in once if not marked.intersection((*r.stack, id(r.module)))]
    if among is not None:
        eligible = [r for r in eligible if id(r.module) in among]
    if not eligible:
        raise ValueError(_no_candidate_message(x, records, aligned, once))
    return _Candidates(records, calls, eligible, marked)


def _search(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[Callable] | None,
    among: frozenset[int] | None = None,
    first_forward: GradientsAt | None = None,
) -> tuple[LayerChoice, bool]:
    """The choice, and whether it may be cached (not when every image's maps are constant).

    Decided on one image: the first whose maps vary (a :func:`~.layer_record.record_forward` each,
    ``no_grad``, until one does), then the gradient rule on that image alone
    (:func:`~.gradient.last_with_gradient`). An image whose maps are all constant (a blank image) cannot
    decide the "positions differ" part; when every image is blank, the first one decides by the
    gradient alone, and the choice is not cached. ``first_forward`` (a one-image ``x`` only) runs the
    gradient rule's first forward (:func:`~.gradient.last_with_gradient`).
    """
    hint = known_prefix_tokens(model)
    prefix = None if hint is None else hint[0]
    first: tuple[int, _Candidates] | None = None
    for image in range(x.shape[0]):
        found = _candidates(model, x[image : image + 1], prefix, among)
        if not found.blank:
            choice = _decide(
                model, x[image : image + 1], _one(targets, image), found, x.shape[0], first_forward
            )
            return choice, True
        first = first or (image, found)
    image, found = first  # every image blank: no map varies to tell layers apart; the gradient alone
    return _decide(model, x[image : image + 1], _one(targets, image), found, x.shape[0], first_forward), False


def _decide(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[Callable] | None,
    found: _Candidates,
    batch: int,
    first_forward: GradientsAt | None = None,
) -> LayerChoice:
    """Rule 4 on ``x`` (the gradient rule, with "positions differ" unless ``found`` is blank),
    then the shared-module, same-map and layout steps; ``batch`` is the caller's batch size."""
    hint = known_prefix_tokens(model)
    prefix, prefix_source = (None, "") if hint is None else hint
    records, calls, eligible = found.records, found.calls, found.eligible
    indices = {r.order - 1 for r in eligible}
    chosen, checked = last_with_gradient(
        model, x, targets, records, eligible, found.marked, vary=not found.blank, first_forward=first_forward
    )
    if chosen is None:
        last = ", ".join(r.name or "<model>" for r in eligible[-5:])
        raise ValueError(
            f"none of the {len(eligible)} modules with a map aligned with the input gets a gradient of the "
            f"explained score and differs between its grid positions (the last ones tried: {last}); the "
            "score does not depend on any spatial layer (a classifier with zero weights, as torchvision's "
            "ViT heads are initialised, gives this too) or every map is constant over its grid"
        )
    chosen = _before_shared_module(chosen, records, calls, indices)
    chosen = _producer(chosen, records, indices)
    layout = _settle_tie(chosen, records)
    plain = layout.kind == CHANNELS_FIRST and layout.element == 0 and chosen.single_tensor
    transform = None if plain else LayoutTransform(layout)
    return LayerChoice(
        layer=chosen.module,
        name=chosen.name,
        output_shape=(batch, *chosen.shape[1:]),
        layout=layout,
        reshape_transform=transform,
        depth=chosen.order,
        modules_run=len(records),
        candidates=len(eligible),
        gradient_checked=checked,
        prefix_source=prefix_source if layout.kind == TOKENS and layout.prefix == prefix else "",
    )


def _no_candidate_message(x: torch.Tensor, records: list[Record], aligned: list, once: list) -> str:
    size = tuple(x.shape[2:])
    if not aligned:
        seen = ", ".join(
            f"{r.name or '<model>'} {r.first_shape if r.first_shape is not None else '-'}"
            for r in records[-6:]
        )
        return (
            f"no module of the model outputs a spatial map aligned with the {size} input: tried all "
            f"{len(records)} "
            f"modules that ran (the last: {seen}); a CAM needs a layer with a grid of at least 2x2 (a model "
            "without convolutions or patch tokens, such as an MLP, has none; the model's own output is what "
            "is explained, not a layer)"
        )
    if not once:
        names = ", ".join(r.name or "<model>" for r in aligned[-5:])
        return (
            f"every module with a map aligned with the {size} input runs more than once per forward "
            f"(e.g. {names}); pass target_layers=[...] explicitly"
        )
    names = ", ".join(r.name or "<model>" for r in once[-5:])
    return f"every module with a map aligned with the {size} input is inside attention (e.g. {names})"


def cached_choice(
    model: nn.Module, input_tensor: torch.Tensor, targets: Sequence[Callable] | None = None
) -> LayerChoice | None:
    """The cached choice for this model, input shape and targets, or None (nothing is run)."""
    found = layer_cache.lookup(model, input_tensor, targets)
    return None if found is None else LayerChoice(layer=found[0], **found[1])


def find_target_layer(
    model: nn.Module,
    input_tensor: torch.Tensor,
    targets: Sequence[Callable] | None = None,
    *,
    among: Collection[nn.Module] | None = None,
    first_forward: GradientsAt | None = None,
) -> LayerChoice:
    """The target layer the rule of :mod:`pytorch_grad_cam.layer_search` picks, with its layout and reason.

    The model is left exactly as it was (modes, hooks, ``requires_grad``, ``.grad``); it runs in
    eval mode for the search, as in a CAM call.

    Args:
        model: the network.
        input_tensor: ``(B, C, *S)`` an input batch on the model's device (one image is enough); a
            clip the model takes frames first, ``(B, T, C, H, W)``, is searched as ``(B, C, T, H, W)``
            (``_core/frames_first.py``; such a choice is not cached here).
        targets: one target per image (callables such as ``ClassifierOutputTarget(k)``) whose
            summed score decides the gradient rule; None for each image's top class.
        among: only these modules may be chosen (the modules on one input's path, for a model with
            several inputs: docs/multi-input.md); such a choice is not cached here.
        first_forward: for a one-image ``input_tensor``, runs the gradient rule's first forward
            instead of the search (a CAM call lends its own forward: ``_core/first_forward.py``);
            the choice is the same, as its score must be the search's.

    Returns:
        the :class:`LayerChoice` (``choice.reason`` is one line saying what and why).

    Raises:
        ValueError: the model rejects the input, has no spatial layer (an MLP), no spatial layer
            that gets the score's gradient, or one whose layout the rule cannot settle.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(input_tensor, torch.Tensor) or input_tensor.dim() not in (3, 4, 5):
        raise ValueError(
            "input_tensor must be a batch (B, C, L), (B, C, H, W) or (B, C, D, H, W); got "
            f"{tuple(input_tensor.shape) if isinstance(input_tensor, torch.Tensor) else type(input_tensor)}"
        )
    if reads_frames_first(model, input_tensor):  # (B, T, C, H, W): searched as (B, C, T, H, W), not cached
        clip = input_tensor.transpose(1, 2)
        try:
            choice = find_target_layer(
                FramesFirst(model), clip, targets, among=among, first_forward=first_forward
            )
        except ValueError as error:  # a refusal names the user's modules, not the wrapper's
            renamed = in_users_names(error, model, input_tensor)
            if renamed is error:
                raise
            raise renamed from error
        return choice.in_wrapped_model()
    if first_forward is not None and input_tensor.shape[0] != 1:
        raise ValueError(f"first_forward needs a one-image input_tensor; got {input_tensor.shape[0]} images")
    detector = _detector_choice(model, targets)
    if detector is not None:
        return detector
    allowed = None if among is None else frozenset(id(m) for m in among)
    found = cached_choice(model, input_tensor, targets) if allowed is None else None
    if found is not None:
        return found
    with torch.inference_mode(False), model_in_eval_mode(model):
        choice, cacheable = _search(model, input_tensor, targets, allowed, first_forward)
    if not cacheable or allowed is not None:
        return choice
    fields = {f.name: getattr(choice, f.name) for f in dataclasses.fields(choice) if f.name != "layer"}
    layer_cache.store(model, input_tensor, targets, choice.layer, fields)
    return choice


def clear_cache() -> None:
    """Forget every cached choice."""
    layer_cache.clear()


def _detector_choice(model: nn.Module, targets: Sequence[Callable] | None) -> LayerChoice | None:
    """A known detector's default layers (its feature pyramid or neck), not searched; else None.

    Asked of the call's seam: a model with no detector in it imports no detection code.
    """
    found = choose_seam(model, targets).default_layers(model)
    if found is None:
        return None
    layers = list(found.target_layers)
    names = {module: name for name, module in model.named_modules()}
    return LayerChoice.of_detector(model, layers, [names.get(m, "") for m in layers], found.reshape_transform)
