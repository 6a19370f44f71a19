"""Checks of the commands' arguments against the machine and the model: the device asked for, the
target layer's output (runs once, a 2-D map) with the model's forward time, the layers that feed the
classifier (for CAM), a ``--target-layer`` path and a ``--category``."""

from __future__ import annotations

import difflib
import re
import time
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam.errors import UsageError

__all__ = ["layers_feeding_the_classifier", "probe", "resolve_device"]


def resolve_device(use_cuda: bool, device: str | None) -> torch.device:
    """The device of ``--use-cuda`` / ``--device``, checked to be there (else UsageError)."""
    if use_cuda and device is not None and not device.strip().lower().startswith("cuda"):
        raise UsageError(f"--use-cuda contradicts --device {device}; give one of them")
    if use_cuda and not torch.cuda.is_available():
        raise UsageError(
            "--use-cuda: CUDA is not available here (torch.cuda.is_available() is False); drop it"
        )
    if device is None:
        return torch.device("cuda" if use_cuda else "cpu")
    try:
        resolved = torch.device(device)
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--device {device}: not available here ({first})") from None
    return resolved


def probe(
    model: nn.Module, layer: nn.Module | None, name: str | None, transform: Any, x: torch.Tensor
) -> tuple[torch.Tensor, int, float]:
    """Two forwards: the logits, the layer's channels and the seconds of one forward (the second,
    timed), after checking that ``layer`` runs once and gives a 2-D map (``layer`` None: no layer
    to check, 0 channels; the attention methods)."""
    if layer is None:
        with torch.no_grad():
            logits = model(x)
        _check_logits(logits)
        start = time.perf_counter()
        with torch.no_grad():
            model(x)
        return logits, 0, time.perf_counter() - start
    outputs: list[Any] = []

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        outputs.append(output)

    handle = layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    if not outputs:
        raise UsageError(f"--target-layer {name}: the layer does not run in the model's forward pass")
    if len(outputs) > 1:
        raise UsageError(
            f"--target-layer {name}: the layer runs {len(outputs)} times in one forward pass (a shared "
            "module); pick a layer that runs once"
        )
    value = outputs[0]
    if transform is not None and isinstance(value, torch.Tensor):
        value = transform(value)
    if not isinstance(value, torch.Tensor) or value.dim() != 4:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise UsageError(
            f"--target-layer {name}: its output {shape} is not a (batch, channels, height, width) feature "
            "map; pick a convolutional layer (see 'Choosing the target layer' in the README)"
        )
    _check_logits(logits)
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    return logits, int(value.shape[1]), time.perf_counter() - start


def _check_logits(logits: Any) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UsageError("the model does not output (batch, classes) scores; cam.py needs a classifier")


def layers_feeding_the_classifier(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The layers whose ``(B, C, h, w)`` output (``h * w > 1``, run once) has as many channels as the
    model's one ``nn.Linear`` has inputs (the layers CAM can explain), last first; empty when the
    model has not exactly one Linear.

    One forward of ``x`` with a hook on every module, removed after it.
    """
    linear = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if len(linear) != 1:
        return []
    wanted = linear[0].in_features
    names = {id(module): name for name, module in model.named_modules() if name}
    found: list[str] = []
    calls: dict[str, int] = {}

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        name = names[id(module)]
        calls[name] = calls.get(name, 0) + 1
        is_map = isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[2:].numel() > 1
        if is_map and output.shape[1] == wanted:  # (a map, not the pooled vector)
            found.append(name)

    handles = [module.register_forward_hook(record) for module in model.modules() if id(module) in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [name for name in dict.fromkeys(reversed(found)) if calls[name] == 1]  # shared modules: no


def find_layer(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The submodule at ``path``, and its qualified name.

    ``path`` is a dotted path of child names; integers index a module's children in order (negative
    ones from the end): ``layer4.-1``, ``features.28``. The README's spelling ``model.layer4[-1]`` is
    accepted too.

    Raises:
        UsageError: a path that leads nowhere; the message lists the children where it stopped.
    """
    text = re.sub(r"^model(\.|$)", "", path.strip())
    text = text.replace("[", ".").replace("]", "").strip(".")
    module = model
    walked: list[str] = []
    for token in text.split(".") if text else []:
        children = dict(module.named_children())
        if token in children:
            module = children[token]
        elif re.fullmatch(r"-?\d+", token) and -len(children) <= int(token) < len(children):
            module = list(children.values())[int(token)]
        else:
            where = ".".join(walked) or "the model"
            names = list(children)
            if names and all(name.isdigit() for name in names):
                listed = f"0 to {len(names) - 1}, or -{len(names)} to -1"
            else:
                listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise UsageError(
                f"--target-layer {path}: {where} has no child {token!r}"
                + (f" (its children: {listed})" if names else " (it has no children)")
            )
        walked.append(token)
    if module is model:
        raise UsageError(f"--target-layer {path!r}: name a layer inside the model, e.g. layer4.-1")
    qualified = {id(m): n for n, m in model.named_modules()}
    return module, qualified.get(id(module), ".".join(walked))


def _normalise_name(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def parse_category(text: str, categories: Sequence[str] | None, num_classes: int | None = None) -> int:
    """A ``--category``: a class index, or a class name such as ``"tiger cat"`` (case and ``_``
    ignored); the one parser of both commands (one photo, and ``--image-dir``).

    Args:
        text: what the user wrote.
        categories: the model's class names, index -> name (None: indices only).
        num_classes: the model's classes (default: ``len(categories)``; None with no names: an index
            is not range-checked here).

    Raises:
        UsageError: an index out of range, an ambiguous name, or an unknown name (with the closest
            names as suggestions).
    """
    text = text.strip()
    if num_classes is None and categories is not None:
        num_classes = len(categories)
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if index < 0 or (num_classes is not None and index >= num_classes):
            if num_classes is None:
                raise UsageError(f"--category {index} is out of range: class indices start at 0")
            raise UsageError(
                f"--category {index} is out of range: the model has {num_classes} classes, "
                f"0 to {num_classes - 1}"
            )
        return index
    if categories is None:
        raise UsageError(f"--category {text!r}: this model has no class names; pass a class index")
    wanted = _normalise_name(text)
    normalised = [_normalise_name(name) for name in categories]
    matches = [index for index, name in enumerate(normalised) if name == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(str(index) for index in matches)
        raise UsageError(f"--category {text!r} names several classes ({listed}); pass the index")
    close = difflib.get_close_matches(wanted, sorted(set(normalised)), n=5, cutoff=0.6)
    if close:
        hints = ", ".join(
            f"{categories[i]!r} ({i})" for name in close for i, n in enumerate(normalised) if n == name
        )
        raise UsageError(f"--category {text!r} is not a class name; did you mean {hints}?")
    raise UsageError(
        f"--category {text!r} is not a class name; pass a name such as 'tabby' or an index 0-999"
    )
