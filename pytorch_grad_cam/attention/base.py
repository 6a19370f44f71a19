"""AttentionCAM: what the attention methods share (capture run, targets, token grid to image map)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.outputs import detach_outputs
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target, as_target_layers, check_finite_output
from pytorch_grad_cam.attention.capture import AttentionCapture, CapturedAttention
from pytorch_grad_cam.base_cam import BaseCAM, ReshapeTransform
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.layer_search.layouts import square_patch_layout


class AttentionCAM(BaseCAM):
    """Base of the methods that read a transformer's attention probabilities.

    The constructor takes BaseCAM's forms; ``target_layers`` are optional (LeGrad reads them as
    the blocks to explain, the others check and ignore them, as FullGrad does), and a
    ``reshape_transform`` is refused: the token layout is found from the attention itself.

    Args:
        prefix_tokens: how many tokens precede the patch grid (class, distillation, registers);
            default: inferred (:func:`~pytorch_grad_cam.layer_search.layouts.square_patch_layout`).

    A subclass implements :meth:`token_relevance`; the map is its patch part laid out on the grid,
    min-max scaled, resized (bilinear) to the input and scaled again, as every method's map: it
    spans [0, 1].
    """

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
    ) -> None:
        if reshape_transform is not None or (callable(use_cuda) and not isinstance(use_cuda, bool)):
            raise ValueError(
                f"{type(self).__name__} does not take a reshape_transform: it reads the attention "
                "probabilities, whose token layout it finds itself (see prefix_tokens=)"
            )
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if prefix_tokens is not None and (
            isinstance(prefix_tokens, bool) or not isinstance(prefix_tokens, int) or prefix_tokens < 0
        ):
            raise ValueError(f"prefix_tokens must be a non-negative int or None; got {prefix_tokens!r}")
        layers: list[nn.Module] = []
        given = target_layers is not None or target_layer is not None
        if given and not (isinstance(target_layers, (list, tuple)) and len(target_layers) == 0):
            layers = as_target_layers(target_layers, target_layer)
        super().__init__(model, [model], use_cuda, device=device)
        self.target_layers = layers
        self.prefix_tokens = prefix_tokens

    # -- what a method defines ------------------------------------------------------------------

    def token_relevance(
        self, input_tensor: torch.Tensor, targets: list[Target] | None
    ) -> tuple[torch.Tensor, int, list[Target] | None]:
        """Every token's relevance.

        Returns:
            ``(B, N)`` relevance of the sequence's tokens, the prefix count, and the targets used.
        """
        raise NotImplementedError

    def get_cam_weights(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Not used: attention methods do not weight activations (see :meth:`token_relevance`)."""
        raise NotImplementedError(f"{type(self).__name__} computes its map in token_relevance")

    # -- shared steps ---------------------------------------------------------------------------

    def _cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> tuple[torch.Tensor, list[Target] | None]:
        if eigen_smooth:
            raise ValueError(
                f"eigen_smooth is not defined for {type(self).__name__} (no activations to reduce)"
            )
        if input_tensor.dim() != 4:
            raise ValueError(
                f"{type(self).__name__} needs images (B, C, H, W); got shape {tuple(input_tensor.shape)}"
            )
        relevance, prefix, targets = self.token_relevance(input_tensor, targets)
        size = input_tensor.shape[2:]
        _, (height, width) = square_patch_layout(relevance.shape[1], size, prefix)
        grid = relevance[:, prefix:].reshape(relevance.shape[0], height, width).float()
        # Relevances can be tiny (gradients ~1e-6): bring each image's peak to 1 before the min-max
        # scaling, whose 1e-7 guard would otherwise flatten them. The maps are scale-free.
        peak = grid.flatten(1).amax(dim=1).clamp_min(torch.finfo(grid.dtype).tiny)
        grid = grid / peak.view(-1, 1, 1)
        # as every method's map (BaseCAM._cams): scaled on the grid, resized, scaled again to span [0, 1]
        return CF.aggregate_layers([CF.layer_cam_to_unit(grid, size)]), targets

    def layout(self, num_tokens: int, input_tensor: torch.Tensor) -> int:
        """The prefix count of a sequence of ``num_tokens`` on this input (checks that a grid exists)."""
        prefix, _ = square_patch_layout(num_tokens, input_tensor.shape[2:], self.prefix_tokens)
        return prefix

    def capture(
        self,
        input_tensor: torch.Tensor,
        *,
        grad: bool,
        capture: AttentionCapture | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[Any, list[CapturedAttention]]:
        """Run the model once under an :class:`AttentionCapture` (a new one by default); sets :attr:`outputs`.

        Returns:
            the raw outputs (in the graph with ``grad``) and the attention records.
        """
        capture = capture or AttentionCapture(grad=grad, reduce=reduce)
        with capture, torch.no_grad():
            outputs = self.model(input_tensor)
        self.outputs = detach_outputs(outputs)
        check_finite_output(self.outputs, input_tensor.shape[0])
        return outputs, capture.records

    def scores(
        self, outputs: Any, targets: list[Target] | None, batch: int
    ) -> tuple[torch.Tensor, list[Target]]:
        """The ``(B,)`` target scores (targets resolved to the top class when None)."""
        if targets is None:
            targets = self.default_targets(self.outputs)
        with torch.enable_grad():
            scores = target_scores(targets, outputs, batch)
        return scores, targets


def attention_stack(records: list[CapturedAttention], batch: int) -> tuple[list[torch.Tensor], int]:
    """The probabilities a rollout chains, and the sequence length ``N``.

    Accepts self-attention over the whole sequence, plus CaiT's layout (patch-only self-attention
    first, then class attention over all tokens): see
    :func:`~pytorch_grad_cam.attention.functional.embed_attention`.

    Raises:
        NotApplicableError: no attention (a CNN), windowed attention (Swin: the attention's batch
            is images x windows, and a rollout across windows is not defined), or a token count
            that changes otherwise (hierarchical transformers).
    """
    if not records:
        raise NotApplicableError(
            "the model computed no attention (no scaled_dot_product_attention, nn.MultiheadAttention or "
            "attention softmax ran): attention methods need a transformer"
        )
    for record in records:
        if record.probs.shape[0] != batch:
            raise NotApplicableError(
                f"windowed attention: an attention of batch {record.probs.shape[0]} for {batch} images "
                "(e.g. Swin); attention rollout across windows is not defined"
            )
    probs = [record.probs for record in records]
    sources = [p.shape[-1] for p in probs]
    num_tokens = max(sources)
    seen_full = False
    for p in probs:
        length, source = p.shape[-2], p.shape[-1]
        if source == num_tokens:
            seen_full = True
        if length > source or (source != num_tokens and (seen_full or source != sources[0])):
            raise NotApplicableError(
                f"the attentions' token counts change along the network ({sources}); rollout needs one "
                "sequence (hierarchical transformers are not supported)"
            )
    return probs, num_tokens
