"""A one-image CAM call's forward, lent to the automatic layer search's gradient rule and kept as the
call's own view: the first call then runs the model twice (the recorded forward, this one), not three
times.

At batch 1 the search's gradient rule runs the very input the CAM runs next, and a gradient CAM with
the plain score (the targets' summed scores, :meth:`BaseCAM.differentiate
<pytorch_grad_cam.base_cam.BaseCAM.differentiate>`) needs the same forward and backward. So the CAM
runs the forward for the search (the graph started at the search's first group of candidate layers)
and, when the chosen layer is the first of them the forward captured (gradients are on from its
output, as in a forward with the layer given), builds its view from that capture: the layer's output
and gradient are the ones a forward with the layer given would capture. Anything else (a later or
another layer, a score without a gradient path, targets the output cannot give, an output the
search scores by its energy) leaves no view, and the call runs its own forward as before. The choice
is the search's either way: the score is the search's, written as the CAM's (the given targets'
summed scores, or with none the call's default targets': the top class, a segmenter's most frequent
class).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from pytorch_grad_cam._core.layer_outputs import to_spatial
from pytorch_grad_cam._core.outputs import detach_outputs
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target, check_finite_output
from pytorch_grad_cam._core.views import CapturedView, forward_view, spatial_gradients
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.layer_search.score import SEGMENTATION, TARGETS, TOP_CLASS, search_score

#: The search's scores a CAM's own score equals: the given targets', or with none the default
#: targets' (the top class, a segmenter's most frequent class). With another (the output's energy),
#: the search keeps its score, and no view is kept.
_CAM_SCORES = (TARGETS, TOP_CLASS, SEGMENTATION)


class SharedFirstForward:
    """The gradient forward of :func:`~pytorch_grad_cam.layer_search.find_target_layer`'s
    ``first_forward``, run as the CAM call's own (see the module docstring).

    Args:
        model: the network (in eval mode, as in the call).
        input_tensor: ``(1, C, *S)`` the call's input, on the model's device.
        targets: the call's targets, or None for its default targets.
        seam: the call's seam (the plain one: a detector's calls do not share).
        default_targets: the CAM's default targets of a (detached) output.
    """

    def __init__(
        self,
        model: nn.Module,
        input_tensor: torch.Tensor,
        targets: list[Target] | None,
        *,
        seam: Any,
        default_targets: Callable[[Any], list[Target]],
    ) -> None:
        if input_tensor.shape[0] != 1:
            raise ValueError(f"input_tensor must hold one image; got {input_tensor.shape[0]}")
        self.model, self.input_tensor, self.targets = model, input_tensor, targets
        self.seam, self.default_targets = seam, default_targets
        #: the group's first captured module, its output and gradient, the output, the targets
        self._kept: tuple[nn.Module, Any, Any, Any, list[Target]] | None = None

    def __call__(self, modules: list[nn.Module]) -> tuple[list[Any], bool]:
        """One forward with the graph started at ``modules``: the score's gradient at each module's
        output (in its structure; None without a gradient path) and whether the score has a path."""
        self._kept = None
        x = self.input_tensor
        capture = ActivationsAndGradients(self.model, modules, track_gradients=True)
        context = self.seam.forward(self.model, modules, track_gradients=True, targets=self.targets)
        outputs = forward_view(self.model, x, capture, context)
        detached = detach_outputs(outputs)
        with torch.enable_grad():
            score, kind = search_score(outputs, self.targets, 1)
            targets = self._targets(detached) if kind in _CAM_SCORES else None
            if targets is not None:  # the same function of the output, written as the CAM's
                score = target_scores(targets, outputs, 1).sum()
        if not score.requires_grad:
            return [None] * len(modules), False
        grads = capture.gradients(score)
        if targets is not None and capture.first_captured is not None:
            first = modules[capture.first_captured]  # gradients on from its output: a given layer's forward
            self._kept = (
                first,
                capture.captured[capture.first_captured],
                grads[capture.first_captured],
                detached,
                targets,
            )
        return grads, True

    def _targets(self, detached: Any) -> list[Target] | None:
        """The call's targets for this output, resolved and bound as
        :func:`~pytorch_grad_cam._core.views.capture_view` does, or None where that raises (the
        call's own forward then says why) or where they are not the search's score: default targets
        the seam gives (a detector's boxes in an output that also holds class scores) or that are
        not one for the one image (an output whose first ``(R, K)`` tensor has ``R != 1`` rows)."""
        try:
            check_finite_output(detached, 1)
            targets = self.targets
            if targets is None:
                if self.seam.default_targets(self.model, detached, self.input_tensor) is not None:
                    return None
                targets = self.default_targets(detached)
                if len(targets) != 1:
                    return None
            self.seam.bind(targets, detached, self.input_tensor, self.model)
        except (ValueError, TypeError):
            return None
        return targets

    def view(
        self, layer: nn.Module, reshape_transform: Callable[[Any], torch.Tensor] | None
    ) -> CapturedView | None:
        """The call's view of ``layer`` from the lent forward, or None; the capture is dropped either way.

        Only the group's first captured module gives a view: the lent forward turned gradients on
        from its output, as a forward with it given does. Before a later module, the modules after
        the first ran with gradients on, where a forward with that module given runs them without,
        and some compute differently then (CPU's attention kernel with a parameter mask, as in timm's
        CoAtNet: maps 1.4e-5 apart; ``nn.MultiheadAttention``'s fast path): the call runs its own.
        """
        kept, self._kept = self._kept, None
        if kept is None or kept[0] is not layer:
            return None
        _, output, grad, detached, targets = kept
        x = self.input_tensor
        activations = [to_spatial(output, 0, x, "output", reshape_transform)]
        gradients = spatial_gradients([grad], x, reshape_transform)
        return CapturedView(detached, targets, activations, gradients, [detach_outputs(output)])
