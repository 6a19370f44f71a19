"""Model-parameter randomisation test: does the map change when the model's weights are randomised?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, https://arxiv.org/abs/1810.03292.
Layers are re-initialised from the top (the output) down, either **cascading** (each step adds one
more random layer) or **independent** (one layer at a time, the others as trained); each step's map
is compared with the trained model's map by Spearman rank correlation and SSIM. A map that explains
the model loses its likeness as layers are randomised; an edge detector keeps it (similarity 1).

The user's model is never changed: the test runs on a ``copy.deepcopy`` of it. Random draws come from
``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so the caller's random state is kept.
A standard layer is re-initialised by its own ``reset_parameters()`` (as quantus 0.6 does: with the
same seed the randomised weights equal quantus'); any other module owning parameters gets normal
draws with each parameter's own mean and standard deviation.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Mapping, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam.metrics.explainers import Explainer
from pytorch_grad_cam.metrics.similarity import spearman, ssim

#: The layers re-initialised by their own ``reset_parameters`` (their documented initialisation).
STANDARD_LAYERS = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Embedding,
)


@dataclasses.dataclass
class RandomisationResult:
    """Per randomisation step (``L`` steps) and image (``B``).

    Attributes:
        layers: the module names, in the order randomised (the top first).
        spearman: ``(L, B)`` float64 rank correlation of each step's map with the original map
            (0 where either map is constant: it keeps none of the original's ranking).
        ssim: ``(L, B)`` float64 structural similarity of the same.
        classes: ``(B,)`` the classes explained (fixed by the trained model).
        order: ``"cascading"`` or ``"independent"``.
    """

    layers: list[str]
    spearman: torch.Tensor
    ssim: torch.Tensor
    classes: list[int]
    order: str

    def final(self) -> dict[str, torch.Tensor]:
        """``(B,)`` similarities after the last step (every layer random when cascading)."""
        return {"spearman": self.spearman[-1], "ssim": self.ssim[-1]}


def parameter_layers(model: nn.Module) -> list[str]:
    """The names of the modules that own parameters, from the top (the last registered) down."""
    owners = [name for name, module in model.named_modules() if any(True for _ in module.parameters(False))]
    return owners[::-1]


def randomise_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise the parameters a module owns (and a norm layer's running statistics) in place."""
    devices = sorted({p.device.index for p in module.parameters(False) if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        if isinstance(module, STANDARD_LAYERS):
            module.reset_parameters()
            return
        for parameter in module.parameters(False):
            std = float(parameter.std()) if parameter.numel() > 1 else 1.0
            parameter.normal_(float(parameter.mean()), std if std > 0 else 1.0)


def predicted_classes(model: nn.Module, images: torch.Tensor) -> list[int]:
    """The top class of each image (one forward pass, no gradients)."""
    with torch.no_grad():
        logits = classifier_logits(model(images), batch_size=images.shape[0])
    return logits.argmax(dim=-1).tolist()


def model_parameter_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    explain: Explainer,
    *,
    classes: Sequence[int] | None = None,
    order: str = "cascading",
    layers: Sequence[str] | None = None,
    seed: int = 1810,
    steps: int | None = None,
    maps: torch.Tensor | None = None,
) -> RandomisationResult:
    """Run the model-parameter randomisation test on a batch.

    Cost: one forward pass (when ``classes`` is None) and ``1 + L`` explanations (``L`` without
    ``maps``), on the copy.

    Args:
        model: the trained model (only read, to copy it).
        images: ``(B, C, H, W)`` inputs.
        explain: from :func:`~pytorch_grad_cam.metrics.explainers.cam_explainer` or
            :func:`~pytorch_grad_cam.metrics.explainers.baseline_explainer`.
        classes: the class explained in each image; None: the trained model's top class.
        order: ``"cascading"`` (top down, keeping the earlier steps' random layers) or
            ``"independent"`` (one layer at a time).
        layers: module names to randomise, in order; None: :func:`parameter_layers` (every module
            owning parameters, top first).
        seed: every layer draws after ``torch.manual_seed(seed)`` (quantus 0.6 seeds each layer
            with its ``seed + 1``). Not the seed the model was initialised with: with it, a layer
            can be drawn back to its untrained weights.
        steps: cut ``layers`` (top first) into this many consecutive groups of near-equal size, one
            group randomised per step (a deep model in a few explanations); None: a layer a step.
            ``RandomisationResult.layers`` then names each group's last (deepest) layer.
        maps: the trained model's ``(B, H, W)`` maps of ``classes``, when already computed.

    Returns:
        The similarities per step and image.
    """
    options = dict(classes=classes, order=order, layers=layers, seed=seed, steps=steps)
    return randomisation_tests(
        model, images, {"": explain}, **options, maps=None if maps is None else {"": maps}
    )[""]


def randomisation_tests(
    model: nn.Module,
    images: torch.Tensor,
    explainers: Mapping[str, Explainer],
    *,
    classes: Sequence[int] | None = None,
    order: str = "cascading",
    layers: Sequence[str] | None = None,
    seed: int = 1810,
    steps: int | None = None,
    maps: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, RandomisationResult]:
    """:func:`model_parameter_randomisation` of several explainers on one copy of the model.

    The copy is made and randomised once, and every explainer explains each step: the results equal
    separate calls, for one deep copy instead of one each.

    Args:
        explainers: name -> explainer.
        maps: name -> the trained model's maps, for the explainers that have them.
        model, images, classes, order, layers, seed, steps: as for :func:`model_parameter_randomisation`.

    Returns:
        name -> result.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() < 3:
        raise ValueError(f"images must be a (B, C, ...) tensor; got {getattr(images, 'shape', images)!r}")
    if order not in ("cascading", "independent"):
        raise ValueError(f"order must be 'cascading' or 'independent'; got {order!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {seed!r}")
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    names = parameter_layers(twin) if layers is None else list(layers)
    unknown = [name for name in names if name not in modules]
    if unknown or not names:
        raise ValueError(f"layers must be module names of model; got {unknown or names!r}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"steps must be a positive int or None; got {steps!r}")
    count = len(names) if steps is None else min(steps, len(names))
    bounds = [round(i * len(names) / count) for i in range(count + 1)]
    groups = [names[bounds[i] : bounds[i + 1]] for i in range(count)]
    if classes is None:
        classes = predicted_classes(twin, images)
    classes = [int(k) for k in classes]
    if len(classes) != images.shape[0]:
        raise ValueError(f"classes must have one class per image ({images.shape[0]}); got {len(classes)}")
    given = dict(maps or {})
    original = {
        name: (explain(twin, images, classes) if name not in given else given[name]).detach().float().cpu()
        for name, explain in explainers.items()
    }
    trained = {key: value.clone() for key, value in twin.state_dict().items()}
    rhos: dict[str, list[torch.Tensor]] = {name: [] for name in explainers}
    ssims: dict[str, list[torch.Tensor]] = {name: [] for name in explainers}
    for step, group in enumerate(groups):
        if order == "independent" and step > 0:
            twin.load_state_dict(trained)
        for layer in group:
            randomise_layer(modules[layer], seed)
        for name, explain in explainers.items():
            randomised = explain(twin, images, classes).detach().float().cpu()
            rhos[name].append(spearman(randomised, original[name]).nan_to_num(0.0))
            ssims[name].append(ssim(randomised, original[name]))
    last = [group[-1] for group in groups]
    return {
        name: RandomisationResult(last, torch.stack(rhos[name]), torch.stack(ssims[name]), classes, order)
        for name in explainers
    }
