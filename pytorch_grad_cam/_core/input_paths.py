"""Which modules lie on the path of which input of a model with several: found by varying one input.

A module is on input ``k``'s path when its output changes as input ``k`` does: one ``no_grad``
forward of the inputs as given, then one per image input with that input alone replaced by a
seeded noisy copy, comparing a fingerprint of every watched module's outputs (its sum and sum of
squares, in float64). Cost: ``1 + number of image inputs`` forwards, nothing kept but two numbers
per module and call.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.inputs import ModelInputs
from pytorch_grad_cam._core.outputs import tensors_in

#: The seed of the noise added to an input to see which modules follow it.
NOISE_SEED = 20


def _fingerprint(output: Any) -> tuple[float, ...]:
    values: list[float] = []
    for tensor in tensors_in(output):
        t = tensor.detach().double()
        values += [float(t.sum()), float((t * t).sum())]
    return tuple(values)


def _prints(model: nn.Module, inputs: ModelInputs, modules: Sequence[nn.Module], replaced: dict) -> list:
    prints: list[list[tuple[float, ...]]] = [[] for _ in modules]
    handles = []
    try:
        for index, module in enumerate(modules):

            def hook(_m: nn.Module, _i: Any, output: Any, index: int = index) -> None:
                prints[index].append(_fingerprint(output))

            handles.append(module.register_forward_hook(hook))
        with torch.no_grad():
            inputs.run(model, replaced)
    finally:
        for handle in handles:
            handle.remove()
    return prints


def varied(value: torch.Tensor) -> torch.Tensor:
    """``value`` plus seeded Gaussian noise of its own scale (never equal to it anywhere)."""
    generator = torch.Generator(device="cpu").manual_seed(NOISE_SEED)
    noise = torch.randn(value.shape, generator=generator, dtype=torch.float32).to(value)
    scale = value.detach().float().std().nan_to_num(0.0).item() if value.numel() > 1 else 0.0
    return value + noise * (scale + 1.0)


def input_paths(
    model: nn.Module, inputs: ModelInputs, keys: Sequence[Hashable], modules: Sequence[nn.Module]
) -> dict[Hashable, set[int]]:
    """Per input key, the ids of the ``modules`` whose outputs depend on that input.

    Args:
        model: the network (run in whatever mode the caller set).
        inputs: the call's inputs, on the model's device.
        keys: the inputs to check (the image inputs).
        modules: the modules to watch (the target layers, or every module for the automatic layer).

    Returns:
        ``{key: {id(module), ...}}``; a module that never ran depends on nothing.
    """
    base = _prints(model, inputs, modules, {})
    paths: dict[Hashable, set[int]] = {}
    for key in keys:
        changed = _prints(model, inputs, modules, {key: varied(inputs.values[key])})
        paths[key] = {id(m) for m, a, b in zip(modules, base, changed) if a and a != b}
    return paths
