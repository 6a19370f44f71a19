"""The one registry of CAM methods: it drives ``cam.py --method``, the README table and the tests."""

from __future__ import annotations

import dataclasses

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.eigen_cam import EigenCAM
from pytorch_grad_cam.eigen_grad_cam import EigenGradCAM
from pytorch_grad_cam.grad_cam import GradCAM
from pytorch_grad_cam.grad_cam_plusplus import GradCAMPlusPlus
from pytorch_grad_cam.layer_cam import LayerCAM
from pytorch_grad_cam.xgrad_cam import XGradCAM


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What the registry knows of a method.

    Attributes:
        name: the ``cam.py --method`` name.
        cls: the class.
        summary: what it does, in one line (the README table).
        paper: the reference, as ``[title](url)``.
    """

    name: str
    cls: type[BaseCAM]
    summary: str
    paper: str

    @property
    def uses_gradients(self) -> bool:
        return self.cls.uses_gradients


_ENTRIES = (
    MethodInfo(
        "gradcam",
        GradCAM,
        "Weight the 2D activations by the average gradient",
        "[Grad-CAM](https://arxiv.org/abs/1610.02391)",
    ),
    MethodInfo(
        "gradcam++",
        GradCAMPlusPlus,
        "Like GradCAM but uses second order gradients",
        "[Grad-CAM++](https://arxiv.org/abs/1710.11063)",
    ),
    MethodInfo(
        "xgradcam",
        XGradCAM,
        "Like GradCAM but scale the gradients by the normalized activations",
        "[XGrad-CAM](https://arxiv.org/abs/2008.02312)",
    ),
    MethodInfo(
        "layercam",
        LayerCAM,
        "Spatially weight the activations by positive gradients; works better in lower layers",
        "[LayerCAM](http://mftp.mmcheng.net/Papers/21TIP_LayerCAM.pdf)",
    ),
    MethodInfo(
        "eigencam",
        EigenCAM,
        "First principal component of the 2D activations (no class discrimination)",
        "[Eigen-CAM](https://arxiv.org/abs/2008.00299)",
    ),
    MethodInfo(
        "eigengradcam",
        EigenGradCAM,
        "Like EigenCAM but class discriminative: first principal component of activations x gradients",
        "[Eigen-CAM](https://arxiv.org/abs/2008.00299)",
    ),
)

#: ``cam.py --method`` name -> method.
METHODS: dict[str, MethodInfo] = {entry.name: entry for entry in _ENTRIES}


def get_method(name: str) -> type[BaseCAM]:
    """The class registered under ``name`` (case-insensitive).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[key].cls


def method_table() -> str:
    """The README's method table, in Markdown."""
    lines = [
        "| `--method` | Class | What it does | Gradients | Paper |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in METHODS.values():
        gradients = "yes" if entry.uses_gradients else "no"
        lines.append(
            f"| `{entry.name}` | `{entry.cls.__name__}` | {entry.summary} | {gradients} | {entry.paper} |"
        )
    return "\n".join(lines)
