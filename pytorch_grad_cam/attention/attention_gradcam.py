"""AttentionGradCAM: Chefer, Gur & Wolf's gradient-weighted attention relevance."""

from __future__ import annotations

from typing import ClassVar

import torch

from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM, attention_stack
from pytorch_grad_cam.utils.validation import Target


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

    Cost: one forward with the attention in the autograd graph, one backward to the first attention.
    """

    uses_gradients: ClassVar[bool] = True

    def token_relevance(
        self, input_tensor: torch.Tensor, targets: list[Target] | None
    ) -> tuple[torch.Tensor, int, list[Target] | None]:
        outputs, records = self.capture(input_tensor, grad=True)
        probs, num_tokens = attention_stack(records, input_tensor.shape[0])
        prefix = self.layout(num_tokens, input_tensor)
        scores, targets = self.scores(outputs, targets, input_tensor.shape[0])
        grads = self.attention_gradients(scores.sum(), probs)
        matrices = [
            AF.embed_attention(AF.positive_gradient_attention(p.detach().float(), g.float()), num_tokens)
            for p, g in zip(probs, grads)
        ]
        return AF.source_row(AF.chefer_relevance(matrices), prefix), prefix, targets
