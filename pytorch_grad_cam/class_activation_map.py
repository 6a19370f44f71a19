"""CAM, the original class activation map."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class CAM(BaseCAM):
    """CAM: the activations weighted by the final linear layer's weights of the class.

    Zhou, Khosla, Lapedriza, Oliva and Torralba, "Learning Deep Features for Discriminative
    Localization", CVPR 2016, https://arxiv.org/abs/1512.04150

    For a network that ends in global average pooling and one linear layer ``fc``:
    ``w_c = fc.weight[k, c]`` for the class ``k`` and ``CAM = relu(sum_c w_c A_c)``, as torchcam 0.5
    defines it. No gradients. ``target_layers`` should be the layer that feeds the pooling (its
    channel count must equal ``fc.in_features``). Targets must be class indices (ints, or
    :class:`~pytorch_grad_cam.utils.model_targets.ClassifierOutputTarget` and its subclasses).

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        fc_layer: the final linear layer (or a 1x1 convolution acting as one). None picks the
            model's only ``nn.Linear``; with several, pass it.
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        fc_layer: nn.Module | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, *args, **options)
        if fc_layer is None:
            linear = [module for module in model.modules() if isinstance(module, nn.Linear)]
            if len(linear) != 1:
                raise NotApplicableError(
                    f"CAM needs the final linear layer and the model has {len(linear)} nn.Linear layers; "
                    "pass fc_layer=... (e.g. fc_layer=model.fc)"
                )
            fc_layer = linear[0]
        is_linear = isinstance(fc_layer, nn.Linear)
        is_pointwise = isinstance(fc_layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and all(
            size == 1 for size in fc_layer.kernel_size
        )
        if not (is_linear or is_pointwise):
            raise TypeError(f"fc_layer must be an nn.Linear or a 1x1 convolution; got {fc_layer!r}")
        self.fc_layer = fc_layer

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        weight = self.fc_layer.weight.detach()
        weight = weight.reshape(weight.shape[0], weight.shape[1])
        if weight.shape[1] != activations.shape[1]:
            raise NotApplicableError(
                f"fc_layer has {weight.shape[1]} input features but the target layer has "
                f"{activations.shape[1]} channels; pick the layer that feeds the final pooling"
            )
        categories = []
        for index, target in enumerate(targets):
            if not isinstance(target, ClassifierOutputTarget):
                raise TypeError(
                    f"CAM explains classes: targets[{index}] must be an int or a ClassifierOutputTarget; "
                    f"got {type(target).__name__}"
                )
            if not 0 <= target.category < weight.shape[0]:
                raise ValueError(
                    f"targets[{index}]: class {target.category} is out of range for fc_layer with "
                    f"{weight.shape[0]} classes"
                )
            categories.append(target.category)
        return weight[categories].to(device=activations.device, dtype=activations.dtype)
