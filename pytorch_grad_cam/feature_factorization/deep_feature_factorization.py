"""Deep Feature Factorization: the concepts a layer's activations are made of, and where they are.

Collins, Achanta and Süsstrunk, "Deep Feature Factorization For Concept Discovery", ECCV 2018,
https://arxiv.org/abs/1806.10206. The activations of a layer, as a ``(C, B*h*w)`` matrix (made
non-negative by subtracting each channel's minimum), are factorised as ``W H`` with ``W`` ``(C, K)``
and ``H`` ``(K, B*h*w)`` non-negative: column ``k`` of ``W`` is a concept (a direction in channel
space), row ``k`` of ``H`` says how strongly each position of each image shows it. A classifier head
run on the concepts says which classes each concept stands for.

The names and return values are pytorch-grad-cam 1.5.x's. The factorisation is this library's own
(multiplicative updates in torch, seeded): it is not scikit-learn's solver, so the concepts are not
1.5.x's numbers (non-negative factorisations are not unique anyway), but they factorise the same
matrix.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from pytorch_grad_cam._core.validation import check_input_tensor, model_device_and_dtype, positive_int
from pytorch_grad_cam.activations_and_gradients import (
    ActivationsAndGradients,
    as_layer_calls,
    check_layer_calls,
)
from pytorch_grad_cam.base_cam import model_in_eval_mode
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.utils.image import create_labels_legend, scale_cam_image, show_factorization_on_image

#: Multiplicative-update iterations of :func:`non_negative_factorization` (scikit-learn's default).
MAX_ITERATIONS = 200
_TINY = 1e-12


def non_negative_factorization(
    matrix: torch.Tensor,
    components: int,
    *,
    iterations: int = MAX_ITERATIONS,
    tol: float = 1e-4,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factorise a non-negative ``(m, n)`` matrix as ``W H``, ``W`` ``(m, k)`` and ``H`` ``(k, n)`` >= 0.

    Lee and Seung's multiplicative updates for the squared Frobenius error, in float64:
    ``H <- H * (W^T V) / (W^T W H)``, ``W <- W * (V H^T) / (W H H^T)``. Both start from seeded
    uniform noise in ``[0, sqrt(mean(V) / k))``; the updates
    stop after ``iterations``, or when the error improved by less than ``tol`` of the first error
    over the last 10 iterations.

    Args:
        matrix: ``(m, n)`` with no negative entry.
        components: ``k >= 1``.
        iterations: the most updates of each factor.
        tol: the relative improvement under which the updates stop.
        seed: the seed of the starting factors (the result is deterministic).

    Returns:
        ``W`` and ``H`` in float64 on the matrix's device.
    """
    components = positive_int(components, "n_components")
    values = matrix.double()
    if bool((values < 0).any()):
        raise ValueError("non_negative_factorization needs a matrix with no negative entry")
    rows, columns = values.shape
    generator = torch.Generator().manual_seed(seed)
    scale = (values.mean() / components).sqrt()
    w = (torch.rand(rows, components, generator=generator, dtype=torch.float64) * scale).to(values.device)
    h = (torch.rand(components, columns, generator=generator, dtype=torch.float64) * scale).to(values.device)
    first = previous = None
    for iteration in range(iterations):
        h = h * (w.T @ values) / ((w.T @ w) @ h).clamp_min(_TINY)
        w = w * (values @ h.T) / (w @ (h @ h.T)).clamp_min(_TINY)
        if iteration % 10 == 9:
            error = torch.linalg.norm(values - w @ h)
            if first is None:
                first = error
            elif (previous - error) / first.clamp_min(_TINY) < tol:
                break
            previous = error
    return w, h


def dff(activations: np.ndarray | torch.Tensor, n_components: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Deep Feature Factorization of ``(B, C, h, w)`` activations.

    NaNs count as 0. Each channel's minimum over the batch is subtracted before the factorisation
    and added back to the concepts.

    Returns:
        ``concepts`` ``(C, K)`` (``W`` plus each channel's minimum) and ``explanations``
        ``(B, K, h, w)`` (``H``, per image), float64 numpy arrays.
    """
    values = torch.as_tensor(activations)
    if values.dim() < 3:
        raise ValueError(f"activations must be (B, C, *spatial); got shape {tuple(values.shape)}")
    batch, channels = values.shape[:2]
    spatial = values.shape[2:]
    matrix = torch.nan_to_num(values.detach().double(), nan=0.0).transpose(0, 1).reshape(channels, -1)
    offset = matrix.min(dim=1, keepdim=True).values
    w, h = non_negative_factorization(matrix - offset, n_components)
    explanations = h.reshape(n_components, batch, *spatial).transpose(0, 1)
    return (w + offset).cpu().numpy(), explanations.cpu().numpy()


class DeepFeatureFactorization:
    """Factorise a target layer's activations into concepts (the 1.5.x class).

    Args:
        model: the network; left as it was (the activations are captured by a forward hook that
            lives for one call, in eval mode, under ``no_grad``).
        target_layer: the layer whose output is factorised.
        reshape_transform: maps the layer's output to ``(B, C, h, w)`` (ViT, Swin).
        computation_on_concepts: optional, e.g. the classifier head ``model.fc``: run on the
            ``(K, C)`` concepts; its output is returned as ``concept_outputs``.
        layer_call: for a target layer that runs more than once in one forward pass, the 0-based
            call to factorise; by default such a layer is refused with a ValueError.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module,
        reshape_transform: Callable[[Any], torch.Tensor] | None = None,
        computation_on_concepts: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        layer_call: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(target_layer, nn.Module):
            raise TypeError(f"target_layer must be a module of the model; got {type(target_layer).__name__}")
        self.model = model
        self.target_layer = target_layer
        self.reshape_transform = reshape_transform
        self.computation_on_concepts = computation_on_concepts
        if isinstance(layer_call, (list, tuple)):
            raise TypeError("layer_call must be None or an int here (DeepFeatureFactorization has one layer)")
        self.layer_call = as_layer_calls(layer_call)

    def __call__(self, input_tensor: torch.Tensor, n_components: int = 16) -> tuple[Any, ...]:
        """Factorise the batch's activations into ``n_components`` concepts.

        Args:
            input_tensor: ``(B, C_in, H, W)``.
            n_components: the number of concepts ``K``.

        Returns:
            ``concepts`` ``(C, K)``, ``explanations``: a list with one ``(K, H, W)`` float32 array
            per image (each concept's map, min-max scaled and resized to the input), and, with
            ``computation_on_concepts``, ``concept_outputs`` ``(K, ...)``.
        """
        input_tensor = check_input_tensor(input_tensor)
        device, dtype = model_device_and_dtype(self.model)
        input_tensor = input_tensor.to(device=device, dtype=dtype or input_tensor.dtype)
        capture = ActivationsAndGradients(
            self.model, [self.target_layer], track_gradients=False, calls=self.layer_call
        )
        with torch.inference_mode(False), model_in_eval_mode(self.model), capture, torch.no_grad():
            self.model(input_tensor)
        check_layer_calls(
            capture.call_counts, [self.layer_call], [f"target_layer ({type(self.target_layer).__name__})"]
        )
        if capture.missing_layers():
            raise ValueError("target_layer never ran in the model's forward pass")
        activations = capture.captured[0]
        if self.reshape_transform is not None:
            activations = self.reshape_transform(activations)
        if not isinstance(activations, torch.Tensor) or activations.dim() < 3:
            raise NotApplicableError(
                "DeepFeatureFactorization needs the target layer's output as a (B, C, h, w) tensor; got "
                f"{type(activations).__name__}: pass a reshape_transform that makes one"
            )
        concepts, explanations = dff(activations.detach().float().cpu(), n_components)
        height, width = input_tensor.shape[2:]
        processed = [scale_cam_image(maps, (width, height)) for maps in explanations]
        if self.computation_on_concepts is None:
            return concepts, processed
        with torch.no_grad():
            concept_tensor = torch.from_numpy(np.float32(concepts.T)).to(
                device=device, dtype=dtype or torch.float32
            )
            concept_outputs = self.computation_on_concepts(concept_tensor).detach().float().cpu().numpy()
        return concepts, processed, concept_outputs


def run_dff_on_image(
    model: nn.Module,
    target_layer: nn.Module,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    img_pil: Image.Image,
    img_tensor: torch.Tensor,
    reshape_transform: Callable[[Any], torch.Tensor] | None = None,
    n_components: int = 5,
    top_k: int = 2,
    *,
    labels: Mapping[int, str] | Sequence[str] | None = None,
) -> np.ndarray:
    """The photo beside its concept map with a legend of each concept's top classes (1.5.x helper).

    Args:
        model, target_layer, reshape_transform: as :class:`DeepFeatureFactorization`.
        classifier: the head that turns a concept ``(K, C)`` into class scores.
        img_pil: the photo, the size of ``img_tensor``.
        img_tensor: ``(C_in, H, W)`` the model's input for it.
        n_components, top_k: concepts, and classes listed per concept.
        labels: class names by index; default: a HuggingFace model's ``config.id2label`` as in
            1.5.x, else ``"class k"``.

    Returns:
        ``(H, 3 W, 3)`` uint8: the photo, the concept map and its legend.
    """
    rgb = np.asarray(img_pil.convert("RGB"), dtype=np.float32) / 255
    factorization = DeepFeatureFactorization(model, target_layer, reshape_transform, classifier)
    _, explanations, concept_outputs = factorization(img_tensor[None], n_components)
    scores = torch.softmax(torch.from_numpy(concept_outputs), dim=-1).numpy()
    if labels is None:  # 1.5.x reads the labels of HuggingFace models from their config
        labels = getattr(getattr(model, "config", None), "id2label", None)
    if labels is None:
        labels = [f"class {k}" for k in range(scores.shape[-1])]
    legend = create_labels_legend(scores, labels=labels, top_k=top_k)
    visualization = show_factorization_on_image(rgb, explanations[0], image_weight=0.3, concept_labels=legend)
    return np.hstack([np.uint8(np.round(rgb * 255)), visualization])
