"""FullGrad."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.outputs import detach_outputs
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import (
    Target,
    as_target_layers,
    check_finite_output,
    check_layers_in_model,
    check_model_runs_eagerly,
    rejected_input,
)
from pytorch_grad_cam.activations_and_gradients import ALL_CALLS, ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM, ReshapeTransform
from pytorch_grad_cam.errors import NotApplicableError

#: The layer types whose biases FullGrad reads (batch norms only when they keep running statistics).
BIAS_LAYER_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)


def layer_bias(layer: nn.Module) -> torch.Tensor | None:
    """The per-channel constant a conv or (eval-mode) batch-norm layer adds, or None if it has none.

    A convolution adds its ``bias``; a batch norm in eval mode computes
    ``gamma (x - mean) / sqrt(var + eps) + beta``, whose constant is
    ``beta - gamma mean / sqrt(var + eps)`` (``gamma = 1``, ``beta = 0`` without affine parameters).
    A batch norm without running statistics normalises by the batch's own, so it has no fixed bias.
    """
    if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
        return None if layer.bias is None else layer.bias.detach()
    if isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)):
        if layer.running_mean is None or layer.running_var is None:
            return None
        scale = torch.rsqrt(layer.running_var.detach() + layer.eps)
        if layer.weight is not None:
            scale = scale * layer.weight.detach()
        bias = -layer.running_mean.detach() * scale
        if layer.bias is not None:
            bias = bias + layer.bias.detach()
        return bias
    return None


class FullGrad(BaseCAM):
    """FullGrad: input-gradient x input plus the bias-gradients of every conv and batch-norm layer.

    Srinivas and Fleuret, "Full-Gradient Representation for Neural Network Visualization",
    NeurIPS 2019, https://arxiv.org/abs/1905.00780

    ``CAM = scale(sum_c psi(|dY/dx * x|_c) + sum_l sum_c resize(psi(|dY/dz_l * b_l|_c)))``: ``x``
    is the input, ``z_l`` the output of layer ``l`` and ``b_l`` its per-channel bias (for a batch
    norm, its eval-mode constant ``beta - gamma mean / sqrt(var + eps)``); ``psi`` scales one
    channel of one image to [0, 1], ``resize`` brings the map to the input size and ``scale``
    min-max scales the total. The layers are every ``Conv2d``/``Conv3d`` with a bias and every
    batch norm with running statistics whose output has the input's rank, as in
    pytorch-grad-cam 1.5.x. ``eigen_smooth=True`` takes instead the first principal component of
    the per-layer maps (1.5.7's output there mixes up axes and is not reproduced).

    ``target_layers`` are not used: FullGrad reads all such layers. They may be omitted or ``[]``;
    if given (1.5.x requires them) they are checked and ignored. A ``reshape_transform`` makes no sense
    here and is refused. Costs one forward pass with autograd and one backward pass to the input.
    A layer that runs several times in one forward contributes once per call (its bias is added
    at each call). ``targets=None`` explains a classifier's top class, or on a detector every box it
    predicts (one map per image, :func:`~pytorch_grad_cam.detection.targets.default_detection_targets`);
    the terms of layers off the path to the box scores (a region proposal head) are left out.
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
    ) -> None:
        if reshape_transform is not None or (callable(use_cuda) and not isinstance(use_cuda, bool)):
            raise NotApplicableError(  # a ValueError: FullGrad does not apply to a token layout
                "FullGrad does not take a reshape_transform: it reads the conv and batch-norm layers' "
                "own (B, C, h, w) outputs"
            )
        given = target_layers is not None or target_layer is not None
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if given and not (isinstance(target_layers, (list, tuple)) and len(target_layers) == 0):
            check_layers_in_model(as_target_layers(target_layers, target_layer), model)  # not used
        check_model_runs_eagerly(model, [], submodules=True)  # every bias layer is hooked

        super().__init__(model, [model], use_cuda, device=device)
        self.target_layers = [
            m for m in model.modules() if isinstance(m, BIAS_LAYER_TYPES) and layer_bias(m) is not None
        ]

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        """Not used: FullGrad's map is not a weighting of activations (see :meth:`_cams`)."""
        raise NotImplementedError("FullGrad computes its map from bias-gradients in _cams")

    def _cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> tuple[torch.Tensor, list[Target] | None]:
        # a copy: the caller's tensor may be an inference tensor, which cannot require grad
        leaf = input_tensor.detach().clone().requires_grad_(True)
        capture = ActivationsAndGradients(
            self.model, self.target_layers, track_gradients=True, calls=ALL_CALLS
        )
        with capture, torch.enable_grad():
            try:
                outputs = self.model(leaf)
            except (RuntimeError, ValueError) as error:
                if input_tensor.dim() != 3:
                    raise
                raise rejected_input(input_tensor, error) from error
            self.outputs = detach_outputs(outputs)
            check_finite_output(self.outputs, input_tensor.shape[0])
            if targets is None:  # a detector's: its predicted boxes; a classifier's: its top class
                targets = self.seam.default_targets(self.model, self.outputs, input_tensor)
            if targets is None:
                targets = self.default_targets(self.outputs)
            self.seam.bind(targets, self.outputs, input_tensor, self.model)
            scores = target_scores(targets, outputs, input_tensor.shape[0])
        # Every call of the layers (a layer run twice adds its bias twice), with a spatial output of
        # the input's rank, on the path to the score.
        layers = [
            (layer, output)
            for layer, outputs in zip(self.target_layers, capture.captured)
            for output in outputs or ()
            if isinstance(output, torch.Tensor)
            and output.dim() == input_tensor.dim()
            and output.requires_grad
        ]
        size = input_tensor.shape[2:]
        grads: tuple[torch.Tensor | None, ...] = (None,) * (len(layers) + 1)
        if scores.requires_grad:
            grads = torch.autograd.grad(
                scores.sum(), [leaf, *(output for _, output in layers)], allow_unused=True
            )
        check_finite_output(list(grads), input_tensor.shape[0], "the target scores' gradient")
        if grads[0] is None:
            warnings.warn(
                "the target scores do not depend on the input; the FullGrad maps are all zero",
                stacklevel=caller_level(),
            )
        input_gradient = torch.zeros_like(leaf) if grads[0] is None else grads[0]
        maps = [CF.channel_unit_sum((input_gradient.detach() * input_tensor).abs().float())]
        for (layer, _output), grad in zip(layers, grads[1:]):
            if grad is None:
                continue
            bias = layer_bias(layer).to(device=grad.device, dtype=grad.dtype)
            contribution = (grad.detach() * bias.reshape(1, -1, *([1] * (grad.dim() - 2)))).abs()
            maps.append(CF.resize_cams(CF.channel_unit_sum(contribution.float()), size))
        stacked = torch.stack(maps, dim=1)
        total = torch.relu(CF.first_principal_component(stacked)) if eigen_smooth else stacked.sum(dim=1)
        return CF.scale_to_unit(total), targets
