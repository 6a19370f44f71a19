"""Gradients of a torchvision two-stage detector's boxes through their own proposals only.

In a torchvision ``GeneralizedRCNN`` (Faster/Mask R-CNN) evaluated as a CAM evaluates it, the
ROI heads pool every proposal of the RPN (about 1000 per image) with ``roi_align``, run the box
head and the predictor on all of them, and post-process: per proposal ``j`` and class ``c`` the
score ``softmax(class_logits[j])[c]`` and the box ``clip(decode(box_regression[j, c],
proposal_j))``, then a threshold, NMS and the top detections. A final detection is therefore a
function of one proposal's row alone, and its gradient with respect to the feature maps flows
only through that proposal's ``roi_align``; yet autograd's backward runs ``roi_align`` and the box
head for every proposal, mostly on zero gradients (about half of a GradCAM call).

:class:`RCNNFastPath` gives the same gradients at the cost of the final detections' rows:

1. the box branch (``box_roi_pool``, ``box_head``, ``box_predictor``) of the forward runs with no
   autograd graph, so the model computes its detections as under ``no_grad``;
2. after ``roi_heads``, each detection's proposal is recovered exactly: the post-processing's own
   decoding (``softmax``, ``box_coder.decode``, ``clip_boxes_to_image`` on the same tensors) is
   repeated and the proposal whose (label, box, score) is bitwise the detection's is taken;
3. only those proposals are pooled again from the captured feature maps, with a graph, through the
   box head and predictor; each detection's score and box are recomputed from its row, and the
   returned ``scores``/``boxes`` are ``value + (recomputed - recomputed.detach())``: the model's
   own values, bit for bit, carrying the recomputed rows' graph.

The mask branch runs as usual, with a graph (``roi_align`` passes no gradient to its boxes, so
the masks depend on the features exactly as before; a mask pooler other than torchvision's
``MultiScaleRoIAlign`` keeps the slow path). Where the recovery fails (a post-processing
that is not torchvision's, a box head whose rows depend on each other, ambiguous proposals), the
ROI heads are run again with a graph: the slow path, same numbers, one extra box branch. (Ties,
different proposals giving bitwise the same box and score, are resolved as torchvision's CPU NMS
resolves them: its sort is stable, the first proposal is kept; on other devices they fall back.)
Keypoint R-CNN (its keypoints depend on the boxes differentiably) keeps the slow path.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.loaded import loaded_class

#: (module, class) of the torchvision types this path applies to (looked up, never imported)
_GENERALIZED_RCNN = ("torchvision.models.detection.generalized_rcnn", "GeneralizedRCNN")
_ROI_HEADS = ("torchvision.models.detection.roi_heads", "RoIHeads")
_ROI_POOL = ("torchvision.ops.poolers", "MultiScaleRoIAlign")


def fast_roi_heads(model: nn.Module, target_layers: Sequence[nn.Module]) -> list[nn.Module]:
    """The ``RoIHeads`` of the ``GeneralizedRCNN`` modules in ``model`` that the fast path can take.

    A ``RoIHeads`` qualifies when it has torchvision's ``forward`` (a subclass may override other
    methods: a post-processing of its own is noticed), no keypoint branch, a mask branch (if any) pooled by
    torchvision's own ``MultiScaleRoIAlign`` (``roi_align`` passes no gradient to the boxes; another
    pooler may, and the boxes of the fast path carry no graph into it), and no target layer lies
    inside it or contains it (a target layer there must see the box branch with its graph).

    Returns:
        the qualifying ``roi_heads`` modules (empty for any other model).
    """
    rcnn, roi_heads_class = loaded_class(*_GENERALIZED_RCNN), loaded_class(*_ROI_HEADS)
    if rcnn is None or roi_heads_class is None:
        return []
    found = []
    for module in model.modules():
        heads = module.roi_heads if isinstance(module, rcnn) else None
        if not isinstance(heads, roi_heads_class) or heads.has_keypoint():
            continue
        if type(heads).forward is not roi_heads_class.forward:  # a subclass's own forward may use
            continue  # the boxes (the fast path's carry no graph) to compute what it returns
        if heads.has_mask() and type(heads.mask_roi_pool) is not loaded_class(*_ROI_POOL):
            continue
        inside = set(heads.modules())
        if any(layer in inside or heads in set(layer.modules()) for layer in target_layers):
            continue
        parts = (heads.box_roi_pool, heads.box_head, heads.box_predictor)
        if all(isinstance(part, nn.Module) for part in parts):
            found.append(heads)
    return found


def proposal_rows(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    proposals: Sequence[torch.Tensor],
    image_shapes: Sequence[tuple[int, int]],
    detections: Sequence[dict[str, torch.Tensor]],
    box_coder: Any,
) -> list[torch.Tensor] | None:
    """Each detection's proposal, found by repeating torchvision's post-processing decode.

    Args:
        class_logits: ``(N, C)`` the predictor's logits of all proposals (all images).
        box_regression: ``(N, 4 C)`` its box deltas.
        proposals: per image ``(N_i, 4)``; ``sum N_i = N``.
        image_shapes: per image ``(h, w)`` of the resized input.
        detections: per image the ROI heads' ``boxes`` ``(D_i, 4)``, ``labels`` ``(D_i,)``,
            ``scores`` ``(D_i,)``.
        box_coder: the ROI heads' ``box_coder``.

    Returns:
        per image ``(D_i,)`` int64 indices into its proposals, or None where a detection matches
        no proposal bitwise, or where which of several proposals it came from is not known.
    """
    from torchvision.ops import boxes as box_ops  # the model is torchvision's: imported already

    counts = [p.shape[0] for p in proposals]
    decoded = box_coder.decode(box_regression, list(proposals))
    probabilities = torch.softmax(class_logits, -1)
    if decoded.dim() != 3 or decoded.shape[1] != class_logits.shape[1]:
        return None  # class-agnostic or unknown box regression
    rows = []
    for boxes, scores, found, own, shape in zip(
        decoded.split(counts), probabilities.split(counts), detections, proposals, image_shapes
    ):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        labels = found["labels"]
        if labels.numel() == 0:
            rows.append(torch.zeros(0, dtype=torch.long, device=labels.device))
            continue
        if int(labels.min()) < 0 or int(labels.max()) >= scores.shape[1]:
            return None
        # (N_i, D_i): proposal j gives detection d bitwise
        same = (boxes[:, labels] == found["boxes"][None]).all(dim=-1)
        same &= scores[:, labels] == found["scores"][None]
        first = same.to(torch.uint8).argmax(dim=0)
        if not bool(same.any(dim=0).all()):
            return None
        for d in torch.nonzero(same.sum(dim=0) > 1).flatten().tolist():
            matched = own[same[:, d]]
            # Different proposals with bitwise equal (box, score) for a label (saturated scores,
            # boxes clipped to the image): torchvision's CPU NMS sorts the scores stably, so the
            # first of them is the one it kept; elsewhere the choice is not known.
            if not bool((matched == matched[:1]).all()) and boxes.device.type != "cpu":
                return None
        if torch.unique(first * scores.shape[1] + labels).numel() != labels.numel():
            return None  # two equal detections (NMS kept both): which is which is not known
        rows.append(first)
    return rows


class RCNNFastPath:
    """For one gradient forward: torchvision R-CNN detections whose graph holds only their own rows.

    Enter around a forward run under ``torch.no_grad()`` in which a capture switches grad mode on
    upstream of the ROI heads (see :mod:`~pytorch_grad_cam.activations_and_gradients`). Hooks are
    registered on entry, removed on exit, and act only on forwards of the entering thread. The
    model is not changed: no module is replaced, and the returned detections are its own values.

    Args:
        roi_heads: from :func:`fast_roi_heads`.

    Attributes:
        fast_forwards: how many ROI-heads forwards took the fast path (tests read it).
        slow_forwards: how many fell back to the slow path (run again with a graph).
    """

    def __init__(self, roi_heads: Sequence[nn.Module]) -> None:
        self.roi_heads = list(roi_heads)
        self.fast_forwards = 0
        self.slow_forwards = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._thread: int | None = None
        self._pending: dict[int, dict[str, Any]] = {}
        self._rerunning = False

    def __enter__(self) -> RCNNFastPath:
        self._thread = threading.get_ident()
        self._pending = {}
        try:
            for heads in self.roi_heads:
                self._handles += [
                    heads.box_roi_pool.register_forward_pre_hook(self._before_box_branch(heads)),
                    heads.box_predictor.register_forward_hook(self._after_box_branch(heads)),
                    heads.register_forward_hook(self._after_roi_heads, with_kwargs=True),
                ]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._handles:
            self._handles.pop().remove()
        self._pending = {}
        self._thread = None

    def _ours(self) -> bool:
        return threading.get_ident() == self._thread and not self._rerunning

    def _before_box_branch(self, heads: nn.Module):
        def hook(module: nn.Module, args: tuple) -> None:
            if not self._ours() or not torch.is_grad_enabled() or len(args) != 3 or heads.training:
                return
            features, proposals, image_shapes = args
            self._pending[id(heads)] = {"features": features, "proposals": proposals, "shapes": image_shapes}
            torch.set_grad_enabled(False)  # the box branch of all proposals: no graph

        return hook

    def _after_box_branch(self, heads: nn.Module):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            pending = self._pending.get(id(heads)) if self._ours() else None
            if pending is None or "logits" in pending:
                return
            torch.set_grad_enabled(True)  # the mask branch and what follows: as before
            if isinstance(output, tuple) and len(output) == 2:
                pending["logits"], pending["regression"] = output

        return hook

    def _after_roi_heads(self, heads: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if not self._ours() or id(heads) not in self._pending:
            return None
        pending = self._pending.pop(id(heads))
        torch.set_grad_enabled(True)  # as it was when the box branch started
        if "logits" in pending and isinstance(output, tuple) and len(output) == 2:
            result = self._with_row_graphs(heads, pending, output[0])
            if result is not None:
                self.fast_forwards += 1
                return result, output[1]
        # the slow path: the ROI heads again, with a graph throughout (same values as ``output``)
        self.slow_forwards += 1
        self._rerunning = True
        try:
            with torch.enable_grad():
                return heads(*args, **kwargs)
        finally:
            self._rerunning = False

    def _with_row_graphs(
        self, heads: nn.Module, pending: dict[str, Any], detections: Any
    ) -> list[dict[str, torch.Tensor]] | None:
        """``detections`` with scores and boxes recomputed, with a graph, from their own rows."""
        from torchvision.ops import boxes as box_ops

        proposals, shapes = pending["proposals"], pending["shapes"]
        logits, regression = pending["logits"], pending["regression"]
        if not isinstance(detections, list) or len(detections) != len(proposals):
            return None
        if not all(isinstance(d, dict) and {"boxes", "labels", "scores"} <= set(d) for d in detections):
            return None
        rows = proposal_rows(logits, regression, proposals, shapes, detections, heads.box_coder)
        if rows is None:
            return None
        if sum(r.numel() for r in rows) == 0:
            return detections
        # each needed proposal once (a proposal can give detections of several classes)
        unique = [torch.unique(r, return_inverse=True) for r in rows]
        chosen = [own[kept] for own, (kept, _) in zip(proposals, unique)]
        self._rerunning = True
        try:
            pooled = heads.box_roi_pool(pending["features"], chosen, shapes)
            new_logits, new_regression = heads.box_predictor(heads.box_head(pooled))
        finally:
            self._rerunning = False
        offsets = torch.tensor([0, *[p.shape[0] for p in proposals]]).cumsum(0)[:-1].tolist()
        old_rows = torch.cat([kept + offset for (kept, _), offset in zip(unique, offsets)])
        for new, old in ((new_logits, logits[old_rows]), (new_regression, regression[old_rows])):
            tolerance = torch.finfo(old.dtype).eps ** 0.5 * (1 + float(old.abs().max()))
            if new.shape != old.shape or float((new.detach() - old).abs().max()) > tolerance:
                return None  # a box head whose rows depend on the other proposals
        probabilities = torch.softmax(new_logits, -1)
        decoded = heads.box_coder.decode(new_regression, chosen)
        counts = [c.shape[0] for c in chosen]
        result = []
        for found, (_, inverse), scores, boxes, shape in zip(
            detections, unique, probabilities.split(counts), decoded.split(counts), shapes
        ):
            labels = found["labels"]
            score = scores[inverse, labels]
            box = box_ops.clip_boxes_to_image(boxes, shape)[inverse, labels]
            result.append(
                {
                    **found,
                    "scores": found["scores"] + (score - score.detach()),
                    "boxes": found["boxes"] + (box - box.detach()),
                }
            )
        return result
