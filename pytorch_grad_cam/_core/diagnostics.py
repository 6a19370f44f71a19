"""Blank and degenerate maps explained: per image and layer, why a map shows nothing, and what to try.

After each call :meth:`BaseCAM._cams` hands its per-layer raw maps (before ReLU and scaling) to
:func:`diagnose_maps`. The common path costs two reductions over the ``(B, *grid)`` maps; the
causes are looked for only in images whose map is blank:

- ``pooled``: the layer's grid is a single cell (it comes after global pooling);
- ``no_gradient``: the explained score's gradient at the layer is zero (the layer does not reach
  the score, e.g. a ViT's patch tokens after its last attention);
- ``negative``: every weighted activation is <= 0, so the ReLU leaves nothing (typically a layer
  before an activation, e.g. a BatchNorm);
- ``zero``: the weighted activations are exactly zero;
- ``constant``: the map has one value everywhere, so it shows no location;
- ``faint``: after the ReLU the map spans less than :data:`FAINT`, so the call returns it with a
  maximum under 0.5, almost black (activations and gradients that vanish, as in a randomly
  initialised network whose layers each shrink their input).

Each finding is kept in ``cam.diagnostics`` and warned once per call and cause with
:class:`BlankMapWarning`.

The diagnosis reads only what the call already holds (the layer, its output, its gradient, the
module tree): it never runs the model again, so a blank map costs no memory beyond the call's own.
Where a better layer needs a search, the message names the function to call
(``find_target_layer``) instead of calling it.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam.errors import BlankMapWarning
from pytorch_grad_cam.functional import SCALE_EPS
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget

#: A raw map spanning less than this comes back with a maximum under 0.5: the call scales it twice
#: (per layer, then after the layers' mean), each time by ``1 / (max - min + 1e-7)``.
FAINT = SCALE_EPS**2


@dataclasses.dataclass(frozen=True)
class Finding:
    """One blank map.

    Attributes:
        image: the image's index in the batch.
        layer: the target layer's name in the model ("" for the model itself).
        kind: ``pooled``, ``no_gradient``, ``negative``, ``zero``, ``constant`` or ``faint``.
        target: the explained target in words (e.g. ``class 285``), or "" without targets.
        message: the cause in words and what to try.
        in_result: whether the CAM returned for the image is blank too. With several target layers
            the other layers' maps can fill one layer's blank map: such a finding is kept here but
            not warned.
    """

    image: int
    layer: str
    kind: str
    target: str
    message: str
    in_result: bool = True

    def in_wrapped_model(self, prefix: str = "") -> Finding:
        """This finding, made on a wrapper holding the user's model as its child ``model``, naming the
        layer as in that model; ``prefix`` goes before the message (which input it is about)."""
        return dataclasses.replace(
            self,
            layer=self.layer.removeprefix("model."),
            message=prefix + self.message.replace("`model.", "`"),
        )


def blank_images(cam: torch.Tensor) -> torch.Tensor:
    """Which maps show nothing after ReLU and min-max scaling: all <= 0, constant, or spanning
    less than :data:`FAINT` (returned with a maximum under 0.5).

    Args:
        cam: ``(B, *s)`` raw maps of one layer.

    Returns:
        ``(B,)`` bool.
    """
    flat = cam.flatten(1)
    high, low = flat.amax(dim=1), flat.amin(dim=1)
    return (high <= 0) | (high == low) | (high.clamp(min=0) - low.clamp(min=0) < FAINT)


def _span(flat: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the range of each ``(B, n)`` map after the ReLU the scaling applies."""
    return flat.amax(dim=1).clamp(min=0) - flat.amin(dim=1).clamp(min=0)


def _target_words(targets: Sequence[Any] | None, image: int) -> str:
    if targets is None:
        return ""
    target = targets[image]
    if isinstance(target, (ClassifierOutputTarget, SemanticSegmentationTarget)):
        return f"class {target.category}"
    return repr(target) if type(target).__repr__ is not object.__repr__ else type(target).__name__


def _cause(
    cam: torch.Tensor, activations: torch.Tensor, gradients: torch.Tensor | None, uses_gradients: bool
) -> str:
    """The cause of one image's blank map (``cam``: ``(*s)``, activations/gradients ``(C, *s)``)."""
    if cam.numel() == 1:
        return "pooled"
    if uses_gradients and gradients is not None and not bool(gradients.any()):
        return "no_gradient"
    if not bool(cam.any()):
        return "zero"
    if float(cam.max()) <= 0:
        return "negative"
    return "faint" if float(_span(cam.reshape(1, -1))[0]) > 0 else "constant"


#: what to try where the module tree names no better layer: the search, called by the user
SEARCH_HINT = (
    "; `pytorch_grad_cam.utils.find_layers.find_target_layer(model, input_tensor[:1], targets[:1])` "
    "names the layer the automatic rule picks (a CAM built without target_layers uses it)"
)

#: activation modules that may follow a pre-activation layer in the module tree
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
)


def _next_activation(model: nn.Module, layer: nn.Module, names: dict[int, str]) -> str:
    """The name of the activation module registered right after ``layer`` in its parent, or "".

    Read from the module tree only (registration order, not forward order): a hint for a layer
    whose weighted activations are all negative because it comes before an activation.
    """
    for parent in model.modules():
        children = list(parent.children())
        for index, child in enumerate(children[:-1]):
            if child is layer:
                following = children[index + 1]
                return names.get(id(following), "") if isinstance(following, _ACTIVATIONS) else ""
    return ""


def _message(kind: str, layer: str, target: str, method: str, pre_activation: bool, instead: str) -> str:
    name = f"`{layer}`" if layer else "the model's output"
    for_target = f" for {target}" if target else ""
    try_instead = f"; explain `{instead}` instead" if instead and instead != layer else SEARCH_HINT
    if kind == "pooled":
        return (
            f"{name} outputs a 1x1 map (it comes after global pooling): there is no location to show, "
            f"so {method} maps are blank; explain a layer before the pooling{try_instead}"
        )
    if kind == "no_gradient":
        return (
            f"the score{for_target} does not depend on {name} (its gradient is zero; e.g. a ViT's patch "
            f"tokens after the last attention reach no class token): {method} maps are blank "
            f"here{try_instead}"
        )
    if kind == "negative":
        before = " (the layer comes before an activation)" if pre_activation else ""
        return (
            f"every weighted activation of {name} is negative{for_target}{before}: {method} maps are blank "
            f"here{try_instead}"
        )
    if kind == "zero":
        return (
            f"the weighted activations of {name} are all zero{for_target}: {method} maps are "
            f"blank{try_instead}"
        )
    if kind.startswith("faint"):
        return (
            f"the {method} map of {name}{for_target} spans only {kind.split(' ')[1]} (under 1e-14: the "
            "min-max scalings, each adding 1e-7 to the range, return it almost black): its activations "
            "and gradients vanish (random weights whose layers each shrink their input do this; trained "
            "weights, or BatchNorm statistics of real images, do not)"
        )
    return f"the {method} map of {name} is constant{for_target}: it shows no location{try_instead}"


def _names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def diagnose_maps(
    model: nn.Module,
    target_layers: Sequence[nn.Module],
    method: type,
    input_tensor: torch.Tensor,
    maps: Sequence[torch.Tensor],
    activations: Sequence[torch.Tensor],
    gradients: Sequence[torch.Tensor | None],
    targets: Any,
) -> list[Finding]:
    """The findings of one view: see the module docstring.

    Args:
        model: the network.
        target_layers: the layers the maps come from.
        method: the CAM class (its name and ``uses_gradients``).
        input_tensor: ``(B, C, *S)`` the view's input (kept for the signature; the diagnosis
            never runs the model).
        maps: per target layer, the raw ``(B, *s)`` map.
        activations: per target layer, the ``(B, C, *s)`` activations.
        gradients: per target layer, their gradients (None or absent for gradient-free methods).
        targets: the view's targets (one per image), or None.
    """
    findings: list[Finding] = []
    names: dict[int, str] | None = None
    for index, cam_map in enumerate(maps):
        blank = blank_images(cam_map.detach())
        if not bool(blank.any()):
            continue
        names = _names(model) if names is None else names
        layer = names.get(id(target_layers[index]), type(target_layers[index]).__name__)
        layer_activations = activations[index]
        layer_gradients = gradients[index] if index < len(gradients) else None
        for image in blank.nonzero().flatten().tolist():
            kind = _cause(
                cam_map[image],
                layer_activations[image],
                None if layer_gradients is None else layer_gradients[image],
                method.uses_gradients,
            )
            target = _target_words(targets, image)
            pre_activation = bool((layer_activations[image] < 0).any())
            instead = _next_activation(model, target_layers[index], names) if kind == "negative" else ""
            span = f"faint {float(_span(cam_map[image].reshape(1, -1))[0]):.2g}" if kind == "faint" else kind
            message = _message(span, layer, target, method.__name__, pre_activation, instead)
            findings.append(Finding(image, layer, kind, target, message))
    return findings


def warn_findings(findings: Sequence[Finding]) -> None:
    """One :class:`BlankMapWarning` per layer and cause, naming the images it concerns (findings
    whose returned CAM is not blank, :attr:`Finding.in_result` False, are not warned)."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        if finding.in_result:
            groups.setdefault((finding.layer, finding.kind), []).append(finding)
    for group in groups.values():
        images = sorted({f.image for f in group})
        which = f"image {images[0]}" if len(images) == 1 else f"images {', '.join(map(str, images))}"
        warnings.warn(f"blank map ({which}): {group[0].message}", BlankMapWarning, stacklevel=caller_level())
