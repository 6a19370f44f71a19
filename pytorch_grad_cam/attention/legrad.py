"""LeGrad: each block's class score differentiated with respect to that block's attention."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.attention.blocks import ScoreFn, block_score_fn, transformer_blocks
from pytorch_grad_cam.attention.capture import AttentionCapture
from pytorch_grad_cam.base_cam import ReshapeTransform
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.utils.target_scores import target_scores
from pytorch_grad_cam.utils.validation import Target


def _tokens(output: Any) -> torch.Tensor | None:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, torch.Tensor) else None


class LeGrad(AttentionCAM):
    """LeGrad: the sensitivity of every block's own prediction to its attention map.

    Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via Feature
    Formation Sensitivity", 2024, https://arxiv.org/abs/2404.03214

    For each chosen block ``l``, with ``A_l`` its post-softmax attention ``(B, h, N, N)`` and
    ``s_l`` the target score of the block's own logits (the model's final norm and head applied
    to the mean of block ``l``'s output tokens: see :mod:`~pytorch_grad_cam.attention.blocks` for
    which parts of torchvision, timm and HuggingFace models are used):

    ``E_l = mean_{heads, queries} relu(ds_l / dA_l)``, prefix tokens dropped;
    ``map = mean_l E_l`` on the patch grid, then min-max scaled and resized to the input.

    Equals torchcam 0.5's ``LeGrad`` on torchvision's ViT (tested). The blocks: ``target_layers``
    (the transformer blocks to explain, e.g. ``model.blocks[-4:]``); default all blocks of a
    known family. ``score_fn`` (``tokens (B, N, D) -> logits (B, classes)``) replaces the built-in
    block score, e.g. for other models. Targets act on those block logits as on the model's output
    (``ClassifierOutputTarget(k)`` = class ``k``; None = the model's top class).

    Cost: one forward with the attention in the autograd graph, then per block a backward
    through that block only (its MLP and attention output) and the head. With targets given, each
    block's gradient is taken as soon as the block has run and the graph is cut after it (the
    values passed on are the block's own), so one block's graph is alive at a time; with
    ``targets=None`` the top class is known only at the end, and the whole graph is kept until then.
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
        score_fn: ScoreFn | None = None,
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
        if score_fn is not None and not callable(score_fn):
            raise TypeError(f"score_fn must be callable (tokens -> logits); got {type(score_fn).__name__}")
        blocks = self.target_layers or transformer_blocks(model)
        score_fn = score_fn or block_score_fn(model)
        if not blocks or score_fn is None:
            raise NotApplicableError(
                f"LeGrad does not know the blocks or the head of a {type(model).__name__}; pass the "
                "transformer blocks as target_layers=[...] and score_fn=tokens->logits"
            )
        self.blocks = list(blocks)
        self.score_fn = score_fn

    def token_relevance(
        self, input_tensor: torch.Tensor, targets: list[Target] | None
    ) -> tuple[torch.Tensor, int, list[Target] | None]:
        batch = input_tensor.shape[0]
        capture = AttentionCapture(grad=True)
        starts: dict[int, int] = {}
        seen: dict[int, tuple[int, int, torch.Tensor | None]] = {}
        relevances: dict[int, torch.Tensor] = {}

        def enter(index: int) -> Any:
            return lambda module, args: starts.__setitem__(index, len(capture.records))

        def leave(index: int) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                seen[index] = (starts[index], len(capture.records), _tokens(output))
                if targets is None or not isinstance(output, torch.Tensor):
                    return None
                # Targets known: this block's relevance now, and the graph cut after it (the
                # values are the block's own), so that no block's graph outlives it.
                with capture.paused():
                    relevances[index] = self._block_relevance(index, capture, *seen[index], targets, batch)
                start, end, _ = seen[index]
                seen[index] = (start, end, None)  # nothing of this block's graph is kept
                for record in capture.records[start:end]:
                    record.probs = record.probs.detach()
                return output.detach()

            return hook

        handles = []
        try:
            for index, block in enumerate(self.blocks):
                handles.append(block.register_forward_pre_hook(enter(index)))
                handles.append(block.register_forward_hook(leave(index)))
            self.capture(input_tensor, grad=True, capture=capture)
        finally:
            for handle in handles:
                handle.remove()
        if targets is None:
            targets = self.default_targets(self.outputs)
        for index in range(len(self.blocks)):
            if index not in seen:
                raise ValueError(f"target_layers[{index}] ({type(self.blocks[index]).__name__}) never ran")
            if index not in relevances:
                relevances[index] = self._block_relevance(index, capture, *seen[index], targets, batch)
        if len({r.shape[1] for r in relevances.values()}) != 1:
            raise ValueError(
                "the chosen blocks attend over different token counts; choose blocks of one stage"
            )
        relevance = torch.stack(list(relevances.values())).mean(dim=0)
        return relevance, self.layout(relevance.shape[1], input_tensor), targets

    def _block_relevance(
        self,
        index: int,
        capture: AttentionCapture,
        start: int,
        end: int,
        tokens: torch.Tensor | None,
        targets: list[Target],
        batch: int,
    ) -> torch.Tensor:
        """``(B, S)``: block ``index``'s ``mean_{heads, queries} relu(ds/dA)``."""
        records = capture.records
        if any(record.probs.shape[0] != batch for record in records[start:end]):
            raise NotApplicableError(
                f"windowed attention in block {index} (an attention batch other than the {batch} "
                "images, e.g. Swin): LeGrad's per-block maps over windows are not defined here"
            )
        if end - start != 1 or tokens is None or tokens.dim() != 3:
            raise NotApplicableError(
                f"block {index} ({type(self.blocks[index]).__name__}) ran {end - start} attentions and "
                "returned no (B, N, D) tokens; LeGrad needs blocks with one attention each"
            )
        probs = records[start].probs
        with torch.enable_grad():
            score = target_scores(targets, self.score_fn(tokens), batch).sum()
        (grad,) = torch.autograd.grad(score, probs, retain_graph=True, allow_unused=True)
        if grad is None:
            raise NotApplicableError(f"block {index}'s score does not depend on its attention")
        return AF.legrad_block_relevance(grad.float())
