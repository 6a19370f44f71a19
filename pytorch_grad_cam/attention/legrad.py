"""LeGrad: each block's class score differentiated with respect to that block's attention."""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.attention.blocks import ScoreFn, block_score_fn, transformer_blocks
from pytorch_grad_cam.attention.capture import AttentionCapture
from pytorch_grad_cam.base_cam import ReshapeTransform
from pytorch_grad_cam.errors import NotApplicableError


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

    Cost: one forward, without a graph up to each chosen block's attention (attention outside the
    chosen blocks runs as the model defines it, fused). In a chosen block the probabilities
    ``A_l`` become a leaf, and only the rest of the block (``A_l @ V``, projection, residual, MLP)
    and the head build a graph, cut at the block's output: ``ds_l / dA_l`` never runs through
    another block, so each block's backward covers just that tail (the MLP's last layer on one
    row: its gradient is the same for every token). The tail's graph keeps the MLP's input, not
    its GELU's 4x wider input: the backward recomputes that a chunk of tokens at a time (one more
    MLP first layer per block in time; see :mod:`~pytorch_grad_cam.attention.capture`). With
    ``targets`` given, each block's gradient is taken as soon as the block has run and its graph
    freed: about 1.1x the forward's peak memory on vit_b_16 (docs/memory.md). With
    ``targets=None`` the top class is known only at the end, so the blocks' tail graphs are kept
    until then (a few times the forward's memory on a ViT-B; see docs/speed.md); pass the targets
    when memory matters.
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
        gradients: dict[int, torch.Tensor] = {}  # attention record -> its block's (B, S) relevance
        capture = AttentionCapture(
            grad=True,
            keep=False,
            recompute_mlp=True,
            tap=lambda index, grad: gradients.__setitem__(index, AF.legrad_block_relevance(grad.float())),
        )
        capture.active = False  # attention outside the chosen blocks runs as the model defines it
        caller = threading.get_ident()
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        logits: dict[int, torch.Tensor] = {}  # targets=None: each block's logits, graph to its attention

        def enter(index: int) -> Any:
            def hook(module: nn.Module, args: Any) -> None:
                if threading.get_ident() != caller:  # another thread's forward of the model
                    return None
                starts[index] = len(capture.records)
                capture.active = True

            return hook

        def leave(index: int) -> Any:
            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                if threading.get_ident() != caller:
                    return None
                capture.active = False
                start, end = starts[index], len(capture.records)
                ends[index] = end
                self._check_block(index, capture, start, end, _tokens(output), batch)
                with capture.paused():
                    block_logits = self.score_fn(_tokens(output))
                    if targets is not None:  # this block's gradient now; its graph is freed at once
                        score = target_scores(targets, block_logits, batch).sum()
                        self._differentiate(index, score, capture.records[start].anchor, gradients, start)
                    else:
                        logits[index] = block_logits
                torch.set_grad_enabled(False)  # the next block's attention inputs build no graph
                return _detached(output)

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
        missing = [index for index in range(len(self.blocks)) if index not in ends]
        if missing:
            raise ValueError(
                f"target_layers[{missing[0]}] ({type(self.blocks[missing[0]]).__name__}) never ran"
            )
        if targets is None:
            # the top class is known only now: each block's score differentiated on its own graph
            targets = self.default_targets(self.outputs)
            for index, block_logits in logits.items():
                with torch.enable_grad():
                    score = target_scores(targets, block_logits, batch).sum()
                self._differentiate(
                    index, score, capture.records[starts[index]].anchor, gradients, starts[index]
                )
            logits.clear()
        relevances = [gradients[starts[index]] for index in range(len(self.blocks))]
        if len({r.shape[1] for r in relevances}) != 1:
            raise ValueError(
                "the chosen blocks attend over different token counts; choose blocks of one stage"
            )
        relevance = torch.stack(relevances).mean(dim=0)
        return relevance, self.layout(relevance.shape[1], input_tensor), targets

    def _check_block(
        self,
        index: int,
        capture: AttentionCapture,
        start: int,
        end: int,
        tokens: torch.Tensor | None,
        batch: int,
    ) -> None:
        """Block ``index`` ran one attention over the images and returned ``(B, N, D)`` tokens."""
        records = capture.records
        if any(record.probs.shape[0] != batch for record in records[start:end]):
            raise NotApplicableError(
                f"windowed attention in block {index} (an attention batch other than the {batch} "
                "images, e.g. Swin): LeGrad's per-block maps over windows are not defined here"
            )
        if end - start != 1 or tokens is None or tokens.dim() != 3 or records[start].anchor is None:
            raise NotApplicableError(
                f"block {index} ({type(self.blocks[index]).__name__}) ran {end - start} attentions and "
                "returned no (B, N, D) tokens; LeGrad needs blocks with one attention each"
            )

    def _differentiate(
        self,
        index: int,
        score: torch.Tensor,
        anchor: torch.Tensor | None,
        gradients: dict[int, torch.Tensor],
        record: int,
    ) -> None:
        """Run block ``index``'s backward from its score to its attention (the tap keeps the relevance).

        Differentiating with respect to the block's own anchor runs only the nodes between the
        score and this block's attention: the graph of no other block is entered."""
        if score.requires_grad:
            torch.autograd.grad(score, anchor, allow_unused=True)
        if record not in gradients:
            raise NotApplicableError(f"block {index}'s score does not depend on its attention")


def _detached(output: Any) -> Any:
    """The block's output with its tokens detached: the next block starts a graph of its own."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return (output[0].detach(), *output[1:])
    return None
