"""The gradient rule's forwards: which of the last candidates get a gradient of the explained score,
one forward per group of candidates (its graph starting at the group's first), latest groups first.

Where a group starts changes only the cost, never the answer: each candidate's gradient is the
score's total gradient at its map, whatever other modules the graph starts at. So the groups are
sized by the maps they hold (a container or a ``Dropout`` passing a map on adds none), and the
first group of a model with attention reaches back to the map its last attention reads (a ViT's
last ``norm1``, the usual answer there), so a ViT is decided in one forward as a CNN is.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.outputs import tensors_in
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.layer_search.layouts import TOKENS, Layout
from pytorch_grad_cam.layer_search.record import Record
from pytorch_grad_cam.layer_search.score import search_score

#: The most maps the first group holds when it reaches back to the last attention's input (past
#: that, the attention is not near the end, and the first group is the last candidate alone).
MAX_FIRST_MAPS = 32


def same_map(parent: Record, records: list[Record], eligible: set[int]) -> Record:
    """The innermost eligible record whose map a parent passed on unchanged (see
    :attr:`~pytorch_grad_cam.layer_search.record.Record.same_as`: only a module that ran inside the parent
    counts, and not when the map was changed in place since, as by a residual ``out += x``)."""
    child = parent.same_as
    if child is None or child not in eligible:
        return parent
    return same_map(records[child], records, eligible)


def _grid_part(grad: torch.Tensor, layout: Layout) -> torch.Tensor:
    return grad[:, layout.prefix :] if layout.kind == TOKENS else grad


def _map_of(record: Record, records: list[Record]) -> int:
    """The index of the record that first returned ``record``'s map (followed through containers
    and pass-through modules that returned it unchanged): records with one map share it."""
    for _ in range(len(records)):
        link = record.same_as if record.same_as is not None else record.passes_on
        if link is None:
            break
        record = records[link]
    return record.order - 1


def _group_start(candidates: list[Record], end: int, maps: int, records: list[Record]) -> int:
    """Where a group ending at ``candidates[end - 1]`` and holding ``maps`` distinct maps starts."""
    seen: set[int] = set()
    start = end
    while start > 0:
        key = _map_of(candidates[start - 1], records)
        if key not in seen and len(seen) == maps:
            break
        seen.add(key)
        start -= 1
    return start


def _first_group_maps(candidates: list[Record], records: list[Record], marked: set[int]) -> int:
    """The maps of the first group: from the map the last attention reads to the end (at most
    :data:`MAX_FIRST_MAPS`), else one (the last candidate)."""
    attention = next((r for r in reversed(records) if id(r.module) in marked and r.sources), None)
    if attention is None:
        return 1
    first = min(attention.sources)
    maps = {_map_of(r, records) for r in candidates if r.order - 1 >= first}
    return len(maps) if 0 < len(maps) <= MAX_FIRST_MAPS else 1


#: The gradient forward of a group: given the modules to start the graph at, run the model once on
#: the deciding image and return the score's gradient at each module's output (in the output's
#: structure; None where the score has none) and whether the score had a gradient path at all.
GradientsAt = Callable[[list[nn.Module]], tuple[list[Any], bool]]


def search_gradients(model: nn.Module, x: torch.Tensor, targets: Sequence[Callable] | None) -> GradientsAt:
    """The search's own gradient forward of ``x``: one ``no_grad`` forward whose graph starts at the
    given modules (:class:`~pytorch_grad_cam.activations_and_gradients.ActivationsAndGradients`), so
    nothing before the earliest of them is kept; the score is :func:`~.score.search_score`'s."""

    def run(modules: list[nn.Module]) -> tuple[list[Any], bool]:
        capture = ActivationsAndGradients(model, modules, track_gradients=True)
        with capture, torch.no_grad():
            outputs = model(x)
        with torch.enable_grad():
            score, _ = search_score(outputs, targets, x.shape[0])
        if not score.requires_grad:
            return [None] * len(modules), False
        return capture.gradients(score), True

    return run


def _group_gradients(
    group: list[Record], records: list[Record], eligible: set[int], gradients_at: GradientsAt
) -> tuple[list[torch.Tensor | None], bool]:
    """The score's gradient at each record's map (its grid part), from one forward of
    ``gradients_at``, and whether the score had a gradient path at all.

    A map a parent passes on unchanged from a child (:func:`same_map`) is read at that child: a graph
    started at the parent's output would miss what the parent itself computes from the map (a
    backbone that also returns its pooled features, as HuggingFace's Swin). A map a module returned
    as is from its input (a ``Dropout``) is read where it was made when that module is in the group
    too: the same tensor, so the same gradient, and one captured copy less."""
    sources = [same_map(r, records, eligible) for r in group]
    in_group = {s.order - 1 for s in sources}
    for position, source in enumerate(sources):
        while source.passes_on is not None and source.passes_on in in_group:
            source = records[source.passes_on]
        sources[position] = source
    modules = list({id(s.module): s.module for s in sources}.values())
    grads, path = gradients_at(modules)
    by_module = {id(m): g for m, g in zip(modules, grads)}
    found = []
    for source in sources:
        g = by_module[id(source.module)]
        found.append(None if g is None else _grid_part(tensors_in(g)[source.layout.element], source.layout))
    return found, path


def last_with_gradient(
    model: nn.Module,
    x: torch.Tensor,
    targets: Sequence[Callable] | None,
    records: list[Record],
    eligible: list[Record],
    marked: set[int],
    *,
    vary: bool,
    first_forward: GradientsAt | None = None,
) -> tuple[Record | None, bool]:
    """The last eligible record whose grid gets a non-zero gradient and (with ``vary``) whose
    positions differ, searching groups of the last candidates, latest first, one forward each: the
    first group as :func:`_first_group_maps` sizes it, each next one with twice the maps.

    Args:
        model: the network, in eval mode.
        x: ``(1, C, *S)`` the deciding image.
        targets: its target (one callable), or None for its top class.
        records: the recorded forward's records (:func:`~.record.record_forward`).
        eligible: the candidates, in forward order.
        marked: the ids of the modules that computed an attention.
        vary: only candidates whose positions differ count.
        first_forward: runs the first group's forward instead of :func:`search_gradients` (a CAM
            call of one image lends its own forward: :mod:`pytorch_grad_cam._core.first_forward`).

    Returns:
        the record (None when none qualifies), and whether the gradient rule could be applied.
        With no gradient path from any candidate to the score, the last candidate that passes the
        other rules (the gradient rule could not be applied).
    """
    indices = {r.order - 1 for r in eligible}
    candidates = [r for r in eligible if r.varies or not vary]
    end, maps, any_path = len(candidates), _first_group_maps(candidates, records, marked), False
    own = search_gradients(model, x, targets)
    gradients_at = first_forward or own
    while end > 0:
        start = _group_start(candidates, end, maps, records)
        group = candidates[start:end]
        grads, path = _group_gradients(group, records, indices, gradients_at)
        gradients_at = own
        any_path = any_path or path
        for record, grad in zip(reversed(group), reversed(grads)):
            if grad is not None and bool((grad != 0).any()):
                return record, True
        end, maps = start, maps * 2
    if not any_path:
        return (candidates[-1] if candidates else None), False
    return None, True
