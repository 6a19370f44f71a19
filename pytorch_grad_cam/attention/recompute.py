"""``low_memory=True`` for the gradient rollouts: the blocks recomputed one at a time in backward.

The exact ``dS/dA_l`` of every layer needs a backward through every block, and autograd keeps
every block's saved tensors from the forward until then (about 7 MB per ViT-B block and image).
Here the forward runs without a graph and keeps only each block's input tokens; the score's
gradient is taken with respect to the last block's output, and then, from the last block down,
each block is run again from its stored input with its graph (attention through the capture's
tap), differentiated with the gradient from the block above, and freed: the gradient with
respect to its input goes to the block below, its attention's layer matrix is folded into the row.
The same numbers as :func:`~pytorch_grad_cam.attention.gradient_fold.folded_row` for about one
more forward of time; the memory is the stored inputs plus one block's graph.

The blocks must form a chain (each takes the previous block's output as its first argument, as
``nn.Sequential`` and a loop over blocks do) with every attention inside them; dropout in train
mode draws the same masks again (the random state is restored per block). The blocks' own forward
hooks (the user's) see each block run twice.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import torch
from torch import nn

from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM, attention_stack
from pytorch_grad_cam.attention.blocks import transformer_blocks
from pytorch_grad_cam.attention.capture import AttentionCapture
from pytorch_grad_cam.attention.gradient_fold import LayerMatrix, RowStep
from pytorch_grad_cam.errors import NotApplicableError


def _first(output: Any) -> torch.Tensor | None:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


def _with_first(output: Any, tokens: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return tokens
    return (tokens, *output[1:])


def recomputed_row(
    cam: AttentionCAM,
    input_tensor: torch.Tensor,
    targets: list[Target] | None,
    layer_matrix: LayerMatrix,
    row_step: RowStep,
) -> tuple[torch.Tensor, int, list[Target] | None]:
    """:func:`~pytorch_grad_cam.attention.gradient_fold.folded_row`'s result, recomputing block by block."""
    blocks: list[nn.Module] = list(cam.target_layers) or transformer_blocks(cam.model) or []
    if not blocks:
        raise NotApplicableError(
            f"low_memory=True needs the transformer blocks of a {type(cam.model).__name__}: pass them as "
            "target_layers=[...]"
        )
    batch = input_tensor.shape[0]
    capture = AttentionCapture(keep=False)
    saved: list[tuple[tuple, dict, torch.Tensor, int, int]] = []  # args, kwargs, rng, first record, end
    state: dict[str, Any] = {"previous": None, "leaf": None}
    caller = threading.get_ident()

    def enter(index: int) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if threading.get_ident() != caller:  # another thread's forward of the model
                return None
            chained = index == 0 or (bool(args) and args[0] is state["previous"])
            if index != len(saved) or not chained:
                raise ValueError(
                    "low_memory=True needs blocks that run once each, in order, each taking the previous "
                    f"block's output as its first argument; block {index} "
                    f"({type(module).__name__}) does not"
                )
            saved.append((args, kwargs, torch.get_rng_state(), len(capture.records), -1))

        return hook

    def leave(index: int) -> Any:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if threading.get_ident() != caller:
                return None
            tokens = _first(output)
            if tokens is None:
                raise ValueError(f"low_memory=True: block {index} returned no tokens")
            saved[index] = (*saved[index][:4], len(capture.records))
            if index < len(blocks) - 1:
                state["previous"] = tokens
                return None
            # the last block: the rest of the network (norm, pooling, head) builds a graph from here
            leaf = tokens.detach().requires_grad_(True)
            state["leaf"] = leaf
            torch.set_grad_enabled(True)
            return _with_first(output, leaf)

        return hook

    handles = []
    try:
        for index, block in enumerate(blocks):
            handles.append(block.register_forward_pre_hook(enter(index), with_kwargs=True))
            handles.append(block.register_forward_hook(leave(index), with_kwargs=True))
        outputs, records = cam.capture(input_tensor, grad=False, capture=capture)
    finally:
        for handle in handles:
            handle.remove()
    state["previous"] = None
    if len(saved) != len(blocks) or state["leaf"] is None:
        raise ValueError(f"low_memory=True: {len(blocks) - len(saved)} of the {len(blocks)} blocks never ran")
    _, num_tokens = attention_stack(records, batch)
    inside = sum(end - start for *_, start, end in saved)
    if inside != len(records):
        raise ValueError(
            f"low_memory=True: {len(records) - inside} of {len(records)} attentions ran outside the blocks "
            "(e.g. CaiT's class-attention blocks); use the default low_memory=False"
        )
    prefix = cam.layout(num_tokens, input_tensor)
    row = AF.first_row(batch, num_tokens, prefix).to(input_tensor.device)
    scores, targets = cam.scores(outputs, targets, batch)
    leaf = state.pop("leaf")
    (gradient,) = (
        torch.autograd.grad(scores.sum(), leaf, allow_unused=True) if scores.requires_grad else (None,)
    )
    del outputs, scores, leaf
    missing = 0
    if gradient is None:
        gradient = torch.zeros_like(saved[-1][0][0])
    for index in range(len(blocks) - 1, -1, -1):
        args, kwargs, rng, start, end = saved.pop()
        gradient, matrices = _block_backward(blocks[index], args, kwargs, rng, gradient, index > 0)
        for position in range(end - start - 1, -1, -1):
            if position in matrices:
                probs, grad = matrices[position]
                row = row_step(row, layer_matrix(probs.float(), grad.float(), num_tokens, prefix))
            else:
                missing += 1
        del args, kwargs, matrices
    if missing:
        warnings.warn(
            f"the target scores do not depend on {missing} of {len(records)} attention maps; their "
            "gradients are taken as zero",
            stacklevel=caller_level(),
        )
    return row, prefix, targets


def _block_backward(
    block: nn.Module, args: tuple, kwargs: dict, rng: torch.Tensor, gradient: torch.Tensor, needs_input: bool
) -> tuple[torch.Tensor | None, dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Run ``block`` again from its stored input with its graph and differentiate its output tokens
    with ``gradient``; returns the gradient of its input (when ``needs_input``) and, per attention
    of the block, its probabilities and their gradient."""
    arrived: dict[int, torch.Tensor] = {}
    tokens = args[0].detach().requires_grad_(needs_input)
    capture = AttentionCapture(grad=True, tap=lambda index, grad: arrived.__setitem__(index, grad))
    with torch.random.fork_rng(devices=[]), capture, torch.set_grad_enabled(needs_input):
        torch.set_rng_state(rng)
        output = _first(block(tokens, *args[1:], **kwargs))
    anchors = [record.anchor for record in capture.records if record.anchor is not None]
    inputs = ([tokens] if needs_input else []) + anchors
    grads = torch.autograd.grad(output, inputs, gradient, allow_unused=True) if output.requires_grad else ()
    below = grads[0] if needs_input and grads else None
    if needs_input and below is None:
        below = torch.zeros_like(tokens)
    matrices = {index: (capture.records[index].probs.detach(), grad) for index, grad in arrived.items()}
    return below, matrices
