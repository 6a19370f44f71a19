"""AttentionGradCAM: Chefer, Gur & Wolf's gradient-weighted attention relevance."""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.attention.gradient_fold import check_low_memory, folded_row
from pytorch_grad_cam.attention.recompute import recomputed_row
from pytorch_grad_cam.base_cam import ReshapeTransform


class AttentionGradCAM(AttentionCAM):
    """Gradient-weighted attention relevance, class specific.

    Chefer, Gur and Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021, https://arxiv.org/abs/2103.15679

    ``R = I``; for each attention layer in forward order
    ``R <- R + mean_heads(relu(dS/dA_l * A_l)) @ R``, with ``S`` the target score and ``A_l``
    the post-softmax attention; the map is the class token's row of ``R`` (the first token when the
    sequence has prefix tokens, else the mean of the rows) over the patch tokens. CaiT's class
    attention updates only the class token's row (see
    :func:`~pytorch_grad_cam.attention.functional.embed_attention`); windowed attention (Swin)
    raises :class:`~pytorch_grad_cam.errors.NotApplicableError`.

    Cost: one forward with the attention in the autograd graph from the first attention on
    (nothing before it), and one backward to the first attention, not to the parameters; each
    layer's ``Abar_l`` is folded into the class token's row as its gradient arrives
    (:mod:`~pytorch_grad_cam.attention.gradient_fold`), so no gradient or ``N x N`` relevance is kept.
    The memory is the autograd graph of every block after the first attention: a full backward
    through the blocks is what the exact ``dS/dA_l`` of every layer takes. ``low_memory=True``
    keeps only each block's input and recomputes the blocks one at a time in backward
    (:mod:`~pytorch_grad_cam.attention.recompute`): the same numbers, about one more forward of
    time, about the memory of one block's graph.

    Args:
        low_memory: recompute block by block (the blocks: ``target_layers``, default all blocks of
            a known family; they must form a chain holding every attention).
        (the others: :class:`~pytorch_grad_cam.attention.base.AttentionCAM`)
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
        low_memory: bool = False,
    ) -> None:
        super().__init__(
            model,
            target_layers,
            use_cuda,
            reshape_transform,
            target_layer=target_layer,
            device=device,
            prefix_tokens=prefix_tokens,
        )
        self.low_memory = check_low_memory(low_memory)

    def token_relevance(
        self, input_tensor: torch.Tensor, targets: list[Target] | None
    ) -> tuple[torch.Tensor, int, list[Target] | None]:
        fold = recomputed_row if self.low_memory else folded_row
        return fold(self, input_tensor, targets, _chefer_matrix, AF.chefer_row_step)


def _chefer_matrix(probs: torch.Tensor, grad: torch.Tensor, num_tokens: int, prefix: int) -> torch.Tensor:
    return AF.embed_attention(AF.positive_gradient_attention(probs, grad), num_tokens)
