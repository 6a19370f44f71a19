"""Attention computed by its math formulation for one call: torch's fused CPU kernel of
``F.scaled_dot_product_attention`` has no second derivative, which ShapleyCAM's Hessian needs."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` by torch's reference formulation
    ``softmax(q k^T * scale + mask) v`` (matmuls and a softmax: differentiable any number of times).

    Args:
        query: ``(..., L, E)``; key ``(..., S, E)``; value ``(..., S, Ev)``; the other arguments as
            ``F.scaled_dot_product_attention`` takes them.

    Returns:
        ``(..., L, Ev)``.
    """
    output, _ = torch.ops.aten._scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
    )
    return output


class MathAttention(TorchFunctionMode):
    """Within ``with MathAttention():`` on this thread, every ``F.scaled_dot_product_attention``
    call runs :func:`math_attention` instead of a fused kernel; the model is not touched, and other
    threads and later calls are not affected (torch's function modes are per thread)."""

    def __torch_function__(
        self, func: Callable, types: Any, args: Sequence[Any] = (), kwargs: dict | None = None
    ) -> Any:
        if func is F.scaled_dot_product_attention:
            return math_attention(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))
