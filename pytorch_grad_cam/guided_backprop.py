"""Guided backpropagation: the input gradient with only positive signals passed back through rectifiers.

Springenberg et al., "Striving for Simplicity: The All Convolutional Net", https://arxiv.org/abs/1412.6806.
At every rectifier ``y = relu(x)`` (or ``relu6``) the backward pass lets through only the gradient that
is positive *and* where the unit was active:

    dL/dx = (0 < x < upper) * max(dL/dy, 0)

(``upper`` is ``inf`` for ReLU and 6 for ReLU6); every other layer backpropagates as usual. The result,
multiplied by a CAM, is the "Guided Grad-CAM" of the Grad-CAM paper.

How it is done: only during the call, a :class:`torch.overrides.TorchFunctionMode` replaces the
rectifier calls of the forward pass by a custom autograd function with that backward rule. The mode
is thread-local and popped in a ``finally``; no module is swapped or hooked, and the model is left
exactly as it was, also when the forward raises.

Covered, as modules or functional calls: ``nn.ReLU``, ``nn.ReLU6``, ``F.relu``, ``F.relu_``,
``torch.relu``, ``torch.relu_``, ``Tensor.relu``, ``Tensor.relu_``, ``F.relu6``, and ``F.hardtanh``/
``F.hardtanh_``/``nn.Hardtanh`` with ``min_val=0`` (a clipped ReLU), in-place or not.
Not covered (they backpropagate plainly): rectifiers written as other ops (``x.clamp(min=0)``,
``torch.maximum(x, 0)``, ``x * (x > 0)``), smooth activations (GELU, SiLU, ...), which have no guided
rule, and code that does not run through Python (TorchScript, graphs compiled by ``torch.compile``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from pytorch_grad_cam._core.modes import model_in_eval_mode, without_autocast
from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import (
    as_targets,
    check_input_tensor,
    check_model_differentiable,
    check_model_has_data,
    check_model_runs_eagerly,
    model_device_and_dtype,
    resolve_device,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class GuidedReLU(torch.autograd.Function):
    """``clamp(x, 0, upper)`` whose backward passes ``max(grad, 0)`` where ``0 < x < upper``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, upper: float, inplace: bool) -> torch.Tensor:
        if inplace:
            out = x.clamp_(min=0.0) if math.isinf(upper) else x.clamp_(0.0, upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0.0) if math.isinf(upper) else x.clamp(0.0, upper)
        ctx.upper = upper
        # The output tells where the unit was active: 0 < y < upper exactly where 0 < x < upper.
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (out,) = ctx.saved_tensors
        active = out > 0
        if not math.isinf(ctx.upper):
            active = active & (out < ctx.upper)
        return torch.where(active & (grad > 0), grad, torch.zeros_like(grad)), None, None


class GuidedBackpropReLU:
    """1.5.x's guided ReLU, for code that applies it itself: ``GuidedBackpropReLU.apply(x)``.

    ``relu(x)`` whose backward passes ``max(grad, 0)`` where ``x > 0`` (:class:`GuidedReLU`).
    :class:`GuidedBackpropReLUModel` does not need it: it guides the model's own rectifiers.
    """

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return GuidedReLU.apply(x, math.inf, False)


class GuidedBackpropReLUasModule(nn.Module):
    """:class:`GuidedBackpropReLU` as a module (the 1.5.x name)."""

    def forward(self, input_img: torch.Tensor) -> torch.Tensor:
        return GuidedBackpropReLU.apply(input_img)


#: The rectifier entry points the guided mode replaces: function -> a parser of its call's arguments
#: into (input, upper bound, in place), or None when the call is not a rectifier.
_RECTIFIERS: dict[Callable[..., Any], Callable[[tuple, dict], tuple[torch.Tensor, float, bool] | None]] = {}


def _plain(inplace_default: bool, upper: float) -> Callable[[tuple, dict], tuple[torch.Tensor, float, bool]]:
    def parse(args: tuple, kwargs: dict) -> tuple[torch.Tensor, float, bool]:
        x = args[0] if args else kwargs["input"]
        inplace = args[1] if len(args) > 1 else kwargs.get("inplace", inplace_default)
        return x, upper, bool(inplace)

    return parse


def _hardtanh(inplace_default: bool) -> Callable[[tuple, dict], tuple[torch.Tensor, float, bool] | None]:
    names = ("input", "min_val", "max_val", "inplace")
    defaults = {"min_val": -1.0, "max_val": 1.0, "inplace": inplace_default}

    def parse(args: tuple, kwargs: dict) -> tuple[torch.Tensor, float, bool] | None:
        bound = {**defaults, **dict(zip(names, args)), **kwargs}
        if float(bound["min_val"]) != 0.0:
            return None  # a hardtanh that is not a clipped ReLU: not a rectifier
        return bound["input"], float(bound["max_val"]), bool(bound["inplace"])

    return parse


for _function in (F.relu, torch.relu, torch.Tensor.relu):
    _RECTIFIERS[_function] = _plain(False, math.inf)
for _function in (torch.relu_, torch.Tensor.relu_):
    _RECTIFIERS[_function] = _plain(True, math.inf)
_RECTIFIERS[F.relu6] = _plain(False, 6.0)
_RECTIFIERS[F.hardtanh] = _hardtanh(False)
_RECTIFIERS[F.hardtanh_] = _hardtanh(True)


class _GuidedRectifiers(TorchFunctionMode):
    """While active (this thread only), rectifier calls run as :class:`GuidedReLU`."""

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        parse = _RECTIFIERS.get(func)
        if parse is not None:
            parsed = parse(tuple(args), kwargs)
            if parsed is not None:
                x, upper, inplace = parsed
                return GuidedReLU.apply(x, upper, inplace)
        return func(*args, **kwargs)


class GuidedBackpropReLUModel:
    """Guided backpropagation of a model's class score to its input.

    Args:
        model: the network. It is left exactly as it was (modes, hooks, modules, ``requires_grad``,
            ``.grad``), except that ``use_cuda=True`` or ``device=`` move it, as asked.
        use_cuda: the original API's flag: run on CUDA.
        device: run on this device (the model is moved there). Default: the model's device.

    Example:
        >>> gb_model = GuidedBackpropReLUModel(model=model, use_cuda=False)
        >>> gb = gb_model(input_tensor, target_category=281)  # (H, W, 3)
        >>> gb_image = deprocess_image(cam_mask[..., None] * gb)
    """

    def __init__(
        self, model: nn.Module, use_cuda: bool = False, *, device: torch.device | str | None = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        check_model_runs_eagerly(model, [], submodules=True)  # a compiled graph's ReLUs are not guided
        self.device = resolve_device(use_cuda, device)
        if self.device is not None:
            check_model_has_data(model)
            model.to(self.device)
        self.model = model

    def __call__(
        self, input_tensor: torch.Tensor, target_category: Sequence[int] | int | None = None
    ) -> np.ndarray:
        """The guided gradient of the target scores with respect to the input.

        Args:
            input_tensor: ``(B, C, H, W)`` (or ``(B, C, D, H, W)``) floating images.
            target_category: a class index for every image, one per image (ints or target callables
                such as ``ClassifierOutputTarget(k)``), or None for each image's top-scoring class.

        Returns:
            float32 ``(H, W, C)`` for a batch of one image (the original API's form), else ``(B, H, W, C)``
            (``(…, D, H, W, C)`` for volumes).
        """
        input_tensor = check_input_tensor(input_tensor)
        batch = input_tensor.shape[0]
        targets = as_targets(target_category, batch, name="target_category")
        device, dtype = model_device_and_dtype(self.model)
        if self.device is not None:
            device = self.device
        check_model_differentiable(self.model, "guided backpropagation")
        precision = without_autocast(torch.device(device))  # the float model's gradient, under autocast too
        with torch.inference_mode(False), torch.enable_grad(), model_in_eval_mode(self.model), precision:
            # a fresh leaf, made outside inference mode (a caller's inference tensor cannot be saved)
            x = input_tensor.detach().to(device=device, dtype=dtype or input_tensor.dtype).clone()
            x.requires_grad_(True)
            with _GuidedRectifiers():
                outputs = self.model(x)
            if targets is None:
                logits = classifier_logits(outputs)
                targets = [ClassifierOutputTarget(int(k)) for k in logits.argmax(dim=-1).tolist()]
            scores = target_scores(targets, outputs, batch)
            (gradient,) = torch.autograd.grad(scores.sum(), x, allow_unused=True)
        if gradient is None:
            gradient = torch.zeros_like(x)
        result = gradient.detach().float().movedim(1, -1).cpu().numpy()
        return result[0] if batch == 1 else result
