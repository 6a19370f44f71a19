"""The attention methods' math as small pure torch functions (no hooks, no models).

Shapes: ``B`` images, ``h`` heads, ``L`` queries, ``S`` keys, ``N`` tokens of the whole sequence.
"""

from __future__ import annotations

from typing import Sequence

import torch

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attention: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Reduce ``(B, h, L, S)`` over the heads with ``mean``, ``max`` or ``min`` -> ``(B, L, S)``."""
    if how == "mean":
        return attention.mean(dim=1)
    if how == "max":
        return attention.amax(dim=1)
    if how == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}; got {how!r}")


def discard_lowest(fused: torch.Tensor, ratio: float, keep_first: bool) -> torch.Tensor:
    """Zero the lowest ``int(ratio * L * S)`` entries of each image's ``(L, S)`` matrix.

    Args:
        fused: ``(B, L, S)``.
        ratio: the share of entries to zero, in ``[0, 1)``.
        keep_first: never zero entry ``(0, 0)`` (the class token's attention to itself), as
            vit-explain intends; the count is then taken among the other entries.

    Returns:
        ``(B, L, S)``, a new tensor.
    """
    batch = fused.shape[0]
    flat = fused.reshape(batch, -1).clone()
    count = int(flat.shape[1] * ratio)
    if count == 0:
        return flat.view_as(fused)
    ranked = flat.clone()
    if keep_first:
        ranked[:, 0] = float("inf")
        count = min(count, flat.shape[1] - 1)
    indices = ranked.topk(count, dim=-1, largest=False).indices
    flat.scatter_(1, indices, 0.0)
    return flat.view_as(fused)


def embed_attention(values: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Place a ``(B, L, S)`` attention among ``N`` tokens: keys are the last ``S`` tokens, queries the
    first ``L`` of those keys; every other entry is 0.

    A self-attention over all tokens (``L = S = N``) is returned as is; CaiT's patch-only
    self-attention (``S = N - 1``) lands on the patch tokens, its class attention (``L = 1``) on the
    class token's row.

    Returns:
        ``(B, N, N)``.
    """
    batch, length, source = values.shape
    if length == source == num_tokens:
        return values
    offset = num_tokens - source
    full = values.new_zeros(batch, num_tokens, num_tokens)
    full[:, offset : offset + length, offset:] = values
    return full


def rollout(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout: ``R = prod_l norm(A_l + I)``, the latest layer on the left.

    ``norm`` divides each row by its sum, so ``norm(A + I) = norm(0.5 A + 0.5 I)`` and, for rows of
    ``A`` that sum to 1, equals ``0.5 A + 0.5 I`` (Abnar & Zuidema's residual-aware matrix).

    Args:
        matrices: per layer ``(B, N, N)`` non-negative, in forward order.

    Returns:
        ``(B, N, N)``: row ``i`` is token ``i``'s share of every input token.
    """
    result = None
    for matrix in matrices:
        eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        step = matrix + eye
        step = step / step.sum(dim=-1, keepdim=True)
        result = step if result is None else step @ result
    return result


def gradient_weighted_attention(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """vit-explain's gradient-rollout matrix ``relu(mean_heads(grad * A))``, (B, h, L, S) -> (B, L, S)."""
    return torch.relu((attention * gradient).mean(dim=1))


def chefer_relevance(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chefer et al.'s relevance: ``R = I``, then ``R <- R + Abar_l @ R`` for each layer in forward order.

    Args:
        matrices: per layer ``Abar_l = mean_heads(relu(grad(A_l) * A_l))`` placed among the
            ``N`` tokens, ``(B, N, N)``.

    Returns:
        ``(B, N, N)``.
    """
    first = matrices[0]
    relevance = torch.eye(first.shape[-1], dtype=first.dtype, device=first.device).expand_as(first)
    for matrix in matrices:
        relevance = relevance + matrix @ relevance
    return relevance


def positive_gradient_attention(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``mean_heads(relu(grad * A))``, ``(B, h, L, S)`` -> ``(B, L, S)`` (Chefer et al.'s ``Abar``)."""
    return torch.relu(gradient * attention).mean(dim=1)


def legrad_block_relevance(gradient: torch.Tensor) -> torch.Tensor:
    """One block's LeGrad relevance of every key: ``mean_{heads, queries} relu(ds/dA)``.

    Args:
        gradient: ``(B, h, L, S)`` the gradient of the block's class score w.r.t. its attention.

    Returns:
        ``(B, S)``.
    """
    return torch.relu(gradient).mean(dim=(1, 2))


def source_row(relevance: torch.Tensor, prefix_tokens: int) -> torch.Tensor:
    """The explained token's row of a ``(B, N, N)`` relevance: the first token (the class token) when
    the sequence has prefix tokens, else the mean over all tokens. Returns ``(B, N)``."""
    if prefix_tokens > 0:
        return relevance[:, 0]
    return relevance.mean(dim=1)


def first_row(
    batch: int, num_tokens: int, prefix_tokens: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The row :func:`source_row` reads, as ``(B, N)`` weights: ``e_0`` with prefix tokens, else ``1 / N``."""
    if prefix_tokens > 0:
        row = torch.zeros(batch, num_tokens, dtype=dtype)
        row[:, 0] = 1.0
        return row
    return torch.full((batch, num_tokens), 1.0 / num_tokens, dtype=dtype)


def chefer_row_step(row: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``row (I + Abar_l)``: one layer of :func:`chefer_relevance` applied to a row, latest layer first.

    ``source_row(chefer_relevance([A_1 .. A_L]))`` equals ``first_row`` passed through this for
    ``A_L``, then ``A_{L-1}``, ..., ``A_1``: only the explained row is ever needed.

    Args:
        row: ``(B, N)``.
        matrix: ``(B, N, N)``.
    """
    return row + torch.bmm(row.unsqueeze(1), matrix).squeeze(1)


def rollout_row_step(row: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``row norm(A_l + I)``: one layer of :func:`rollout` applied to a row, latest layer first.

    Args:
        row: ``(B, N)``.
        matrix: ``(B, N, N)`` non-negative.
    """
    step = matrix + torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    step = step / step.sum(dim=-1, keepdim=True)
    return torch.bmm(row.unsqueeze(1), step).squeeze(1)
