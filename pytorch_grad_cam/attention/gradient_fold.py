"""The target score's backward through every attention, each layer folded into one row as it arrives.

AttentionGradCAM and GradientRollout need ``dS/dA_l`` for every attention ``l`` and then only one
row of a product of per-layer matrices: the class token's row of ``M_L ... M_1`` (or the mean
row), which can be built from the latest layer down, ``row <- row M_l``. The backward delivers the
gradients in that order (layer ``L`` first), so each layer's matrix is made and folded into the
row the moment its gradient arrives (through the capture's ``tap``), and neither the gradients nor
the per-layer matrices are kept: the memory is the forward's autograd graph, which the backward
frees as it goes. A gradient that arrives out of order waits for the layers after it; an attention
the score does not depend on counts as a zero gradient (with a warning).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM, attention_stack
from pytorch_grad_cam.attention.capture import AttentionCapture

#: ``(probs (B, h, L, S), grad (B, h, L, S), num_tokens, prefix) -> (B, N, N)`` one layer's matrix.
LayerMatrix = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]
#: ``(row (B, N), matrix (B, N, N)) -> row``, e.g. :func:`.functional.chefer_row_step`.
RowStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def folded_row(
    cam: AttentionCAM,
    input_tensor: torch.Tensor,
    targets: list[Target] | None,
    layer_matrix: LayerMatrix,
    row_step: RowStep,
) -> tuple[torch.Tensor, int, list[Target] | None]:
    """One forward and one backward of the target scores; returns the ``(B, N)`` folded row, the
    prefix count and the targets used. ``layer_matrix`` of an attention without a gradient is
    taken as the identity step (zero matrix), as a zero gradient gives in both methods."""
    batch = input_tensor.shape[0]
    pending: dict[int, torch.Tensor] = {}
    state: dict = {}

    def tap(index: int, grad: torch.Tensor) -> None:
        record = capture.records[index]
        pending[index] = layer_matrix(record.probs.detach().float(), grad.float(), *state["layout"])
        record.probs = torch.empty(record.probs.shape, dtype=record.probs.dtype, device="meta")
        while state["next"] in pending:  # fold in order, latest layer first
            state["row"] = row_step(state["row"], pending.pop(state["next"]))
            state["next"] -= 1

    capture = AttentionCapture(grad=True, tap=tap)
    outputs, records = cam.capture(input_tensor, grad=True, capture=capture)
    probs, num_tokens = attention_stack(records, batch)
    prefix = cam.layout(num_tokens, input_tensor)
    state.update(
        layout=(num_tokens, prefix),
        next=len(records) - 1,
        row=AF.first_row(batch, num_tokens, prefix).to(probs[0].device),
    )
    del probs
    scores, targets = cam.scores(outputs, targets, batch)
    anchors = [record.anchor for record in records if record.anchor is not None]
    if anchors and scores.requires_grad:
        torch.autograd.grad(scores.sum(), anchors, allow_unused=True)
    del outputs, scores
    missing = 0
    while state["next"] >= 0:  # what is left: layers whose gradient never came (zero), out-of-order ones
        if state["next"] in pending:
            state["row"] = row_step(state["row"], pending.pop(state["next"]))
        else:
            missing += 1
        state["next"] -= 1
    if missing:
        warnings.warn(
            f"the target scores do not depend on {missing} of {len(records)} attention maps; their "
            "gradients are taken as zero",
            stacklevel=caller_level(),
        )
    return state["row"], prefix, targets


def check_low_memory(low_memory: bool) -> bool:
    """The ``low_memory=`` option of the gradient methods, checked."""
    if not isinstance(low_memory, bool):
        raise TypeError(f"low_memory must be True or False; got {low_memory!r}")
    return low_memory
