"""YOLO's fast path: the Detect head's box branch runs without a graph when no target reads boxes.

An ultralytics ``Detect`` head (YOLOv5u/v8/11) computes, at each of its levels, a box branch
(``cv2``: the box distributions) and a class branch (``cv3``) from the same neck map. A
:class:`~pytorch_grad_cam.detection.targets.DetectionTarget` without ``add_iou`` scores class
probabilities only, so the box branch's gradient is zero everywhere and a backward through it (dense
convolutions over every level) is wasted work. With the box branch run without a graph the class
scores' gradients are the same to the bit, and the backward walks the class branch alone. A
target that may read the boxes (``add_iou``, or any other callable) keeps the full graph.
"""

from __future__ import annotations

import threading
from typing import Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.loaded import loaded_class


def yolo_box_branches(model: nn.Module, target_layers: Sequence[nn.Module]) -> list[nn.Module]:
    """The box branches a gradient forward of ``model`` may run without a graph (empty: none).

    Only ultralytics' own ``Detect`` (not a subclass, not an end-to-end head), found inside
    ``model``, and only branches that hold no target layer.

    Args:
        model: the network the CAM runs (an ultralytics ``DetectionModel``, or anything else).
        target_layers: the CAM's target layers.
    """
    detect = loaded_class("ultralytics.nn.modules.head", "Detect")
    if detect is None:
        return []
    branches = []
    for module in model.modules():
        if type(module) is not detect or module.end2end:
            continue
        for branch in module.cv2:
            inside = {id(m) for m in branch.modules()}
            if not any(id(layer) in inside for layer in target_layers):
                branches.append(branch)
    return branches


class BoxBranchesWithoutGraph:
    """For one gradient forward: the given box branches run with grad mode off.

    Hooks are registered on entry and removed on exit; they act only on forwards of the entering
    thread, and each restores the grad mode it found. Nothing of the model is changed.

    Args:
        branches: from :func:`yolo_box_branches`.

    Attributes:
        forwards: how many branch forwards ran without a graph (tests read it).
    """

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        self.branches = list(branches)
        self.forwards = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._thread: int | None = None
        self._saved: list[bool] = []
        self._entry_mode = True

    def __enter__(self) -> BoxBranchesWithoutGraph:
        self._thread = threading.get_ident()
        self._entry_mode = torch.is_grad_enabled()
        try:
            for branch in self.branches:
                self._handles += [
                    branch.register_forward_pre_hook(self._before),
                    branch.register_forward_hook(self._after),
                ]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._handles:
            self._handles.pop().remove()
        if self._saved:  # a forward that raised inside a branch: the grad mode found on entry
            # (not the one inside the forward, which an enclosing ``no_grad`` that exited first
            # has already replaced with the caller's)
            self._saved.clear()
            torch.set_grad_enabled(self._entry_mode)
        self._thread = None

    def _before(self, module: nn.Module, args: tuple) -> None:
        if threading.get_ident() != self._thread:
            return
        self._saved.append(torch.is_grad_enabled())
        torch.set_grad_enabled(False)
        self.forwards += 1

    def _after(self, module: nn.Module, args: tuple, output: object) -> None:
        if threading.get_ident() != self._thread or not self._saved:
            return
        torch.set_grad_enabled(self._saved.pop())
