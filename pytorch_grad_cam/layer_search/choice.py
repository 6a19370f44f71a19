"""What the layer search chose, and why: :class:`LayerChoice`."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from torch import nn

from pytorch_grad_cam.layer_search.layouts import Layout, LayoutTransform


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """The automatically chosen target layer(s) and why.

    Attributes:
        layer: the module.
        name: its name in ``model.named_modules()`` ("" for the model itself).
        output_shape: the shape of its output tensor (the one read as a map).
        layout: how that tensor reads as ``(B, C, *grid)``.
        reshape_transform: the transform to pass with it (None for channels-first tensors).
        depth: its position among the modules that ran, in forward order (1-based).
        modules_run: how many modules ran in the forward.
        candidates: how many modules passed rules 1-3.
        gradient_checked: False when the score has no gradient path from the input at all
            (the gradient rule could not be applied).
        prefix_source: where a token prefix count was read (e.g. timm ``num_prefix_tokens``), or "".
        extra_layers: a known detector's other target layers (its pyramid levels), after ``layer``.
        detector: for a known detector, its class name: its default layers were taken, not searched
            (``output_shape``, ``layout``, ``depth``, ... are then unknown: empty or 0).
    """

    layer: nn.Module
    name: str
    output_shape: tuple[int, ...]
    layout: Layout | None
    reshape_transform: LayoutTransform | Callable[[Any], Any] | None
    depth: int
    modules_run: int
    candidates: int
    gradient_checked: bool = True
    prefix_source: str = ""
    extra_layers: tuple[nn.Module, ...] = ()
    extra_names: tuple[str, ...] = ()
    detector: str = ""

    @classmethod
    def of_detector(
        cls,
        model: nn.Module,
        layers: list[nn.Module],
        names: list[str],
        reshape_transform: Callable[[Any], Any] | None,
    ) -> LayerChoice:
        """The choice of a known detector's default layers (see :attr:`detector`)."""
        return cls(
            layer=layers[0],
            name=names[0],
            output_shape=(),
            layout=None,
            reshape_transform=reshape_transform,
            depth=0,
            modules_run=0,
            candidates=0,
            gradient_checked=False,
            extra_layers=tuple(layers[1:]),
            extra_names=tuple(names[1:]),
            detector=type(model).__name__,
        )

    def in_wrapped_model(self) -> LayerChoice:
        """This choice, searched on a wrapper holding the user's model as its child ``model``
        (several inputs' ``OneInputVaried``, a frames-first clip's ``FramesFirst``), named as in that
        model."""
        return dataclasses.replace(self, name=self.name.removeprefix("model."))

    @property
    def layers(self) -> list[nn.Module]:
        """Every target layer chosen: ``layer``, then ``extra_layers``."""
        return [self.layer, *self.extra_layers]

    @property
    def grid(self) -> tuple[int, ...]:
        return () if self.layout is None else self.layout.grid

    @property
    def reason(self) -> str:
        """One line: what was chosen and why (for ``cam.py`` to print)."""
        if self.detector:
            names = ", ".join(n or "<model>" for n in (self.name, *self.extra_names))
            return f"target layers {names}: the default feature maps of a {self.detector} (not searched)"
        name = self.name or "the model itself"
        grid = "x".join(str(g) for g in self.grid)
        source = f"; prefix from {self.prefix_source}" if self.prefix_source else ""
        gradient = "" if self.gradient_checked else "; gradient not checked (no gradient path from the input)"
        return (
            f"target layer {name} ({type(self.layer).__name__}, output {tuple(self.output_shape)}, "
            f"{self.layout.describe()}{source}): the last of {self.modules_run} modules in forward order "
            f"(#{self.depth}) with a {grid} map aligned with the input, run once, outside attention, with "
            f"a non-zero gradient of the score{gradient}"
        )

    def __str__(self) -> str:
        return self.reason
