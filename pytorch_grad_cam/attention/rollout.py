"""Attention rollout (Abnar & Zuidema) and gradient rollout, vit-explain's methods with its defects fixed."""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM, attention_stack
from pytorch_grad_cam.attention.gradient_fold import check_low_memory, folded_row
from pytorch_grad_cam.attention.recompute import recomputed_row
from pytorch_grad_cam.base_cam import ReshapeTransform


def _check_discard_ratio(discard_ratio: float) -> float:
    if (
        isinstance(discard_ratio, bool)
        or not isinstance(discard_ratio, (int, float))
        or not 0 <= discard_ratio < 1
    ):
        raise ValueError(f"discard_ratio must be a number in [0, 1); got {discard_ratio!r}")
    return float(discard_ratio)


def _rolled_out(
    fused: list[torch.Tensor], num_tokens: int, prefix: int, discard_ratio: float
) -> torch.Tensor:
    """``(B, N)``: the explained token's row of the rollout of per-layer ``(B, L, S)`` matrices."""
    matrices = []
    for matrix in fused:
        keep_first = prefix > 0 and matrix.shape[-1] == num_tokens
        matrix = AF.discard_lowest(matrix, discard_ratio, keep_first)
        matrices.append(AF.embed_attention(matrix, num_tokens))
    return AF.source_row(AF.rollout(matrices), prefix)


class AttentionRollout(AttentionCAM):
    """Attention rollout: how much each patch token flows into the class token through all layers.

    Abnar and Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020,
    https://arxiv.org/abs/2005.00928

    Per attention layer ``l`` (in forward order) the heads are fused (``head_fusion``: mean, max
    or min), the lowest ``discard_ratio`` share of entries is zeroed, and
    ``R = prod_l norm(0.5 A_l + 0.5 I)`` (rows renormalised to sum 1, later layers on the left).
    The map is the class token's row of ``R`` (the first token when the sequence has prefix
    tokens; the mean of all rows when it has none) over the patch tokens. Not class specific;
    ``targets`` are not used. Cost: one forward pass with the attention computed explicitly.

    Differences from ``jacobgil/vit-explain``'s ``VITAttentionRollout``:

    - any batch size (vit-explain reads image 0 only, and its discarding zeroes image 0's indices);
    - non-square grids and any number of prefix tokens (vit-explain takes ``sqrt`` of the token
      count and drops exactly one token);
    - the attention is captured from the attention computation itself (``F.scaled_dot_product_attention``,
      ``nn.MultiheadAttention``, an explicit softmax), so fused attention is seen (vit-explain hooks
      ``attn_drop``, which fused attention never calls);
    - rows are renormalised by their own sums (vit-explain's ``a / a.sum(dim=-1)`` divides column
      ``j`` by row ``j``'s sum);
    - ``discard_ratio`` counts the entries other than the class token's attention to itself, which
      is never discarded (vit-explain takes the count over all entries, then skips that one);
    - the map is min-max scaled like every CAM here (vit-explain divides by the maximum).

    CaiT: its patch-only self-attention blocks and then its class-attention blocks are chained
    (the class token's rows), so the map is what reaches the class token through both.
    Swin and other windowed attention: :class:`~pytorch_grad_cam.errors.NotApplicableError`.

    Args:
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        discard_ratio: share of each layer's lowest fused entries to zero, in ``[0, 1)``.
        (the others: :class:`~pytorch_grad_cam.attention.base.AttentionCAM`)
    """

    uses_gradients: ClassVar[bool] = False
    uses_targets: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        target_layers: nn.Module | Sequence[nn.Module] | None = None,
        use_cuda: bool | ReshapeTransform | None = None,
        reshape_transform: ReshapeTransform | None = None,
        *,
        target_layer: nn.Module | None = None,
        device: torch.device | str | None = None,
        prefix_tokens: int | None = None,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
    ) -> None:
        if head_fusion not in AF.HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {AF.HEAD_FUSIONS}; got {head_fusion!r}")
        self.head_fusion = head_fusion
        self.discard_ratio = _check_discard_ratio(discard_ratio)
        super().__init__(
            model,
            target_layers,
            use_cuda,
            reshape_transform,
            target_layer=target_layer,
            device=device,
            prefix_tokens=prefix_tokens,
        )

    def token_relevance(
        self, input_tensor: torch.Tensor, targets: list[Target] | None
    ) -> tuple[torch.Tensor, int, list[Target] | None]:
        # the heads are fused as each attention is captured: one (B, 1, L, S) map per layer is kept
        _, records = self.capture(
            input_tensor, grad=False, reduce=lambda p: AF.fuse_heads(p.float(), self.head_fusion).unsqueeze(1)
        )
        probs, num_tokens = attention_stack(records, input_tensor.shape[0])
        prefix = self.layout(num_tokens, input_tensor)
        fused = [p[:, 0] for p in probs]
        return _rolled_out(fused, num_tokens, prefix, self.discard_ratio), prefix, targets


class GradientRollout(AttentionCAM):
    """Gradient rollout: attention rollout of the gradient-weighted attention, class specific.

    ``jacobgil/vit-explain``'s ``VITAttentionGradRollout`` (https://github.com/jacobgil/vit-explain),
    on the rollout of Abnar and Zuidema (https://arxiv.org/abs/2005.00928): per layer
    ``A'_l = relu(mean_heads(dS/dA_l * A_l))`` (``S`` the target score), the lowest
    ``discard_ratio`` share zeroed, then ``R = prod_l norm(A'_l + I)`` and the class token's row
    (mean of rows without prefix tokens) over the patches, as :class:`AttentionRollout`.

    Differences from vit-explain, besides those of :class:`AttentionRollout`: each layer's
    attention is paired with its own gradient (vit-explain appends gradients from backward hooks,
    which fire in reverse order, so layer ``l`` met layer ``L - 1 - l``'s gradient); targets as in
    every CAM here (``ClassifierOutputTarget`` etc., None = top class), for any batch.
    Cost: one forward with the attention in the autograd graph from the first attention on, and
    one backward to the first attention (not to the parameters), each layer folded into the row
    as its gradient arrives (:mod:`~pytorch_grad_cam.attention.gradient_fold`).

    ``low_memory=True``: the blocks recomputed one at a time in backward, as
    :class:`~pytorch_grad_cam.attention.attention_gradcam.AttentionGradCAM`'s.

    Args:
        discard_ratio: share of each layer's lowest entries to zero, in ``[0, 1)``.
        low_memory: recompute block by block (:mod:`~pytorch_grad_cam.attention.recompute`).
    """

    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        target_layers: nn.Module | Sequence[nn.Module] | None = None,
        use_cuda: bool | ReshapeTransform | None = None,
        reshape_transform: ReshapeTransform | None = None,
        *,
        target_layer: nn.Module | None = None,
        device: torch.device | str | None = None,
        prefix_tokens: int | None = None,
        discard_ratio: float = 0.0,
        low_memory: bool = False,
    ) -> None:
        self.discard_ratio = _check_discard_ratio(discard_ratio)
        self.low_memory = check_low_memory(low_memory)
        super().__init__(
            model,
            target_layers,
            use_cuda,
            reshape_transform,
            target_layer=target_layer,
            device=device,
            prefix_tokens=prefix_tokens,
        )

    def token_relevance(
        self, input_tensor: torch.Tensor, targets: list[Target] | None
    ) -> tuple[torch.Tensor, int, list[Target] | None]:
        ratio = self.discard_ratio

        def layer_matrix(
            probs: torch.Tensor, grad: torch.Tensor, num_tokens: int, prefix: int
        ) -> torch.Tensor:
            matrix = AF.gradient_weighted_attention(probs, grad)
            keep_first = prefix > 0 and matrix.shape[-1] == num_tokens
            return AF.embed_attention(AF.discard_lowest(matrix, ratio, keep_first), num_tokens)

        fold = recomputed_row if self.low_memory else folded_row
        return fold(self, input_tensor, targets, layer_matrix, AF.rollout_row_step)
