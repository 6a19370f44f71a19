"""ShapleyCAM."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.math_attention import MathAttention
from pytorch_grad_cam._core.outputs import map_tensors, tensors_in
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM


class ShapleyCAM(BaseCAM):
    """ShapleyCAM: GradCAM with a second-order (Hessian) correction of the gradient.

    Cai, "CAMs as Shapley Value-based Explainers", The Visual Computer, 2025,
    https://arxiv.org/abs/2501.06261

    A second-order Taylor expansion of the score around the activations gives the Shapley values
    of the channels in closed form: with ``G = dY/dA`` and the Hessian-vector product
    ``HA = d(G . A)/dA`` (``A`` held fixed in the product),
    ``w_c = mean_ij (G - HA / 2)_cij`` and ``CAM = relu(sum_c w_c A_c)``.

    After a ReLU network ending in one linear layer the Hessian is zero and ShapleyCAM equals
    GradCAM; the paper pairs it with :class:`~pytorch_grad_cam.utils.model_targets.ClassifierOutputReST`
    (a log-softmax score), whose Hessian is not. Costs one extra backward pass through the network
    after the target layers.

    Attention computed by ``F.scaled_dot_product_attention`` (timm's and HuggingFace's ViTs) runs
    by its math formulation during the call (:class:`~pytorch_grad_cam._core.math_attention.MathAttention`):
    torch's fused CPU kernel has no second derivative. The model is not changed.
    """

    def _cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> tuple[torch.Tensor, list[Target] | None]:
        with MathAttention():
            return super()._cams(input_tensor, targets, eigen_smooth)

    def differentiate(self, capture: ActivationsAndGradients, score: torch.Tensor) -> list[Any]:
        """Per target layer ``G - HA / 2``, the gradient with its Hessian correction."""
        gradients = capture.gradients(score, create_graph=True)
        corrected = []
        for layer_index, (outputs, grads) in enumerate(zip(capture.captured, gradients)):
            pairs = [(a, g) for a, g in zip(tensors_in(outputs), tensors_in(grads)) if g.requires_grad]
            products = {}
            if pairs:
                activations = [a for a, _ in pairs]
                hvps = torch.autograd.grad(
                    [g for _, g in pairs],
                    activations,
                    grad_outputs=[a.detach() for a in activations],
                    allow_unused=True,
                    retain_graph=layer_index < len(gradients) - 1,
                )
                products = {id(g): h for (_, g), h in zip(pairs, hvps)}

            def correct(grad: torch.Tensor, products: dict[int, Any] = products) -> torch.Tensor:
                hvp = products.get(id(grad))
                if hvp is None:
                    return grad.detach()
                return (grad - 0.5 * hvp).detach()

            corrected.append(map_tensors(correct, grads))
        return corrected

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return CF.grad_cam_weights(grads)
