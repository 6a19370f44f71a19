"""Argument checks shared by every CAM, metric and command: clear errors before the model is touched."""

from __future__ import annotations

import argparse
import itertools
import numbers
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

Target = Callable[[Any], torch.Tensor]

#: The seeds ``torch.Generator.manual_seed`` takes.
SEED_RANGE = (-(2**63), 2**64 - 1)


def positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """An int (a Python or numpy integer, not a bool) of at least ``minimum``, as a Python int.

    Args:
        value: the argument.
        name: its name, for the message.
        minimum: the smallest value allowed (1: a positive int; 0: a count that may be zero).

    Raises:
        TypeError: not an integer (a float such as ``2.0``, a string, a bool).
        ValueError: an integer below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def int_option(minimum: int = 1) -> Callable[[str], int]:
    """An argparse ``type=`` for an int option of at least ``minimum`` (:func:`positive_int` on the text).

    The error argparse reports reads ``argument --batch-size: expected an int >= 1, got '0'``.
    """

    def parse(text: str) -> int:
        try:
            return positive_int(int(text.strip()), "the value", minimum=minimum)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {text!r}") from None

    parse.__name__ = f"int >= {minimum}"
    return parse


def check_seed(seed: object, name: str = "seed") -> int | None:
    """A random seed: None (unseeded) or an int that ``torch.Generator.manual_seed`` takes.

    Raises:
        TypeError: neither None nor an integer (a float, a string, a bool).
        ValueError: an integer outside ``[-2**63, 2**64 - 1]``.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int or None; got {seed!r} ({type(seed).__name__})")
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ValueError(f"{name} must be between -2**63 and 2**64 - 1 (torch's seeds); got {seed!r}")
    return int(seed)


def as_target_layers(
    target_layers: nn.Module | Sequence[nn.Module] | None, target_layer: nn.Module | None
) -> list[nn.Module]:
    """Normalise the two constructor spellings (``target_layers=[...]``, ``target_layer=m``).

    Raises:
        TypeError: neither or both given, or an entry that is not an ``nn.Module``.
        ValueError: an empty list.
    """
    if target_layers is not None and target_layer is not None:
        raise TypeError("pass either target_layers=[...] or target_layer=..., not both")
    if target_layers is None and target_layer is None:
        raise TypeError("target_layers is required: a list of modules of the model, e.g. [model.layer4[-1]]")
    layers = target_layer if target_layers is None else target_layers
    if isinstance(layers, nn.ModuleList):
        layers = list(layers)
    elif isinstance(layers, nn.Module):
        layers = [layers]
    elif isinstance(layers, (list, tuple)):
        layers = list(layers)
    else:
        raise TypeError(f"target_layers must be a list of nn.Module; got {type(layers).__name__}")
    if not layers:
        raise ValueError("target_layers is empty; pass at least one module, e.g. [model.layer4[-1]]")
    for index, layer in enumerate(layers):
        if not isinstance(layer, nn.Module):
            raise TypeError(f"target_layers[{index}] must be an nn.Module; got {type(layer).__name__}")
    return layers


def check_input_tensor(input_tensor: object, *, signals: bool = False) -> torch.Tensor:
    """Check an image batch: a finite floating tensor ``(B, C, H, W)`` or ``(B, C, D, H, W)``, B > 0.

    With ``signals=True`` a batch of 1-D signals ``(B, C, L)`` is accepted too (the CAMs take it).

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: wrong rank, empty batch or spatial size, NaN or inf values.
    """
    if not isinstance(input_tensor, torch.Tensor):
        raise TypeError(f"input_tensor must be a torch.Tensor; got {type(input_tensor).__name__}")
    if not input_tensor.is_floating_point():
        raise TypeError(f"input_tensor must be a floating point tensor; got dtype {input_tensor.dtype}")
    if input_tensor.dim() not in ((3, 4, 5) if signals else (4, 5)):
        raise ValueError(
            f"input_tensor must be a batch of shape {'(B, C, L), ' if signals else ''}(B, C, H, W) or "
            "(B, C, D, H, W); "
            f"got shape {tuple(input_tensor.shape)}"
        )
    if input_tensor.numel() == 0:
        raise ValueError(f"input_tensor is empty: shape {tuple(input_tensor.shape)}")
    if not bool(torch.isfinite(input_tensor).all()):
        raise ValueError("input_tensor contains NaN or inf values")
    return input_tensor


def rejected_input(input_tensor: torch.Tensor, error: Exception) -> ValueError:
    """The error for an input the model's forward raised on (chain it: ``raise ... from error``)."""
    shape = tuple(input_tensor.shape)
    if input_tensor.dim() == 3:
        return ValueError(
            f"input_tensor must be a batch of shape (B, C, H, W) for this model (it rejected {shape}, "
            f"read as a batch of 1-D signals (B, C, L): {type(error).__name__}: {error}); for one image "
            "(C, H, W) pass input_tensor[None]"
        )
    return ValueError(f"the model rejected input_tensor of shape {shape}: {type(error).__name__}: {error}")


def _is_category(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_targets(targets: object, batch_size: int, name: str = "targets") -> list[Target] | None:
    """One target per image, or None for "each image's top class".

    Accepts None, an int (the original API's ``target_category``: one class for every image), or a
    sequence (list, tuple, 1-D array or tensor) of ints and/or target callables.

    Raises:
        TypeError: an entry that is neither an int nor a callable.
        ValueError: a count that is not the batch size, or a negative category.
    """
    if targets is None:
        return None
    if isinstance(targets, (np.ndarray, torch.Tensor)):
        targets = targets.item() if targets.ndim == 0 else targets.tolist()
    if _is_category(targets):
        targets = [int(targets)] * batch_size
    if isinstance(targets, str) or not isinstance(targets, Sequence):
        raise TypeError(
            f"{name} must be None, an int class index, or a list with one target per image; "
            f"got {type(targets).__name__}"
        )
    if len(targets) != batch_size:
        raise ValueError(
            f"{name} has {len(targets)} entries but the batch has {batch_size} images; pass one per image"
        )
    resolved: list[Target] = []
    for index, target in enumerate(targets):
        if _is_category(target):
            if target < 0:
                raise ValueError(f"{name}[{index}] = {target}: a class index must be >= 0")
            resolved.append(ClassifierOutputTarget(int(target)))
        elif callable(target):
            resolved.append(target)
        else:
            raise TypeError(
                f"{name}[{index}] must be an int class index or a callable target such as "
                f"ClassifierOutputTarget(k); got {type(target).__name__}"
            )
    return resolved


def resolve_device(use_cuda: bool | None, device: object) -> torch.device | None:
    """The device asked for at construction, or None for "wherever the model is".

    Raises:
        TypeError: ``use_cuda`` not a bool, or ``device`` not a device spec.
        ValueError: CUDA asked for but not available, or ``use_cuda`` contradicting ``device``.
    """
    if use_cuda is not None and not isinstance(use_cuda, bool):
        raise TypeError(f"use_cuda must be True or False; got {use_cuda!r}")
    if device is not None:
        try:
            device = torch.device(device)
        except (TypeError, RuntimeError) as error:
            raise TypeError(
                f"device must be a torch.device or a string like 'cuda:0'; got {device!r}"
            ) from error
        if use_cuda is not None and use_cuda != (device.type == "cuda"):
            raise ValueError(f"use_cuda={use_cuda} contradicts device={device}")
    elif use_cuda:
        device = torch.device("cuda")
    if device is not None and device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "CUDA was asked for (use_cuda=True or device='cuda') but torch.cuda.is_available() is False; "
            "use use_cuda=False or device='cpu'"
        )
    return device


def check_model_has_data(model: nn.Module, name: str = "model") -> None:
    """Raise a ValueError if parameters or buffers of ``model`` are on the ``meta`` device.

    Such tensors have a shape but no data (a model built under ``torch.device("meta")``, or by
    ``init_empty_weights``); running it fails deep inside torch. Cheap: no forward pass.

    Raises:
        ValueError: naming the first few such tensors and what to do.
    """
    names = [
        key
        for key, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
        if tensor.is_meta
    ]
    if names:
        what = "parameter or buffer" if len(names) == 1 else "parameters and buffers"
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise ValueError(
            f"{name} has {len(names)} {what} on the 'meta' device, which hold no data ({shown}). "
            f"Materialise it first: {name}.to_empty(device='cpu') (or your device), then "
            f"{name}.load_state_dict(weights)"
        )


def model_device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    """Where the model's first parameter (or buffer) lives, and its first floating dtype if any.

    Raises:
        ValueError: the model holds tensors without data (:func:`check_model_has_data`).
    """
    check_model_has_data(model)
    device, dtype = None, None
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        device = tensor.device if device is None else device
        if tensor.is_floating_point():
            dtype = tensor.dtype
            break
    return device if device is not None else torch.device("cpu"), dtype


def _floating_tensors(value: Any) -> list[torch.Tensor]:
    """The floating tensors of a model's output: a tensor, or held in dicts, lists and tuples."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in _floating_tensors(item)]
    return []


def check_finite_output(outputs: Any, batch_size: int, what: str = "the model's output") -> None:
    """Refuse a model output holding NaN or inf: its CAM would be blank or NaN, never a map.

    Args:
        outputs: the (detached) output of ``model(input_tensor)``: a tensor, or a dict, list or tuple
            of them.
        batch_size: the input's ``B``; the message names the images of a ``(B, ...)`` tensor.
        what: how the message names it.

    Raises:
        ValueError: naming the images (or the whole output) and what to check.
    """
    for tensor in _floating_tensors(outputs):
        if tensor.numel() == 0 or bool(torch.isfinite(tensor).all()):
            continue
        images = ""
        if tensor.dim() >= 1 and tensor.shape[0] == batch_size:
            bad = (~torch.isfinite(tensor.reshape(batch_size, -1))).any(dim=1).nonzero().flatten().tolist()
            images = f" for input_tensor image{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:10]))}"
        raise ValueError(
            f"{what} holds NaN or inf values{images}: no CAM can be computed from it; check the model's "
            "weights and its forward on this input (a division by zero, a sqrt or log at 0, an overflow)"
        )


def check_layers_in_model(layers: Sequence[nn.Module], model: nn.Module, name: str = "target_layers") -> None:
    """Refuse a layer that is not a submodule of ``model`` (a layer of another instance, a copy).

    Raises:
        ValueError: naming the layer's index and class.
    """
    own = {id(module) for module in model.modules()}
    for index, layer in enumerate(layers):
        if id(layer) not in own:
            raise ValueError(
                f"{name}[{index}] ({type(layer).__name__}) is not a module of this model (a layer of another "
                "instance or of a copy?); pass a layer of the model itself, e.g. [model.layer4[-1]]"
            )


def check_model_runs_eagerly(
    model: nn.Module, layers: Sequence[nn.Module], name: str = "model", *, submodules: bool = False
) -> None:
    """Refuse a TorchScript model or target layer (``torch.jit.script`` or ``torch.jit.trace``).

    Its layers run inside a compiled graph: hooks cannot be registered on them, or never fire.
    With ``submodules`` (a method that hooks every layer, as FullGrad) any scripted submodule is refused.

    Raises:
        TypeError: naming what is scripted and what to pass instead.
    """
    scripted = [name] if isinstance(model, torch.jit.ScriptModule) else []
    scripted += [
        f"target_layers[{k}]" for k, layer in enumerate(layers) if isinstance(layer, torch.jit.ScriptModule)
    ]
    if submodules:
        scripted += [
            f"{name}.{path}" for path, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)
        ]
    if scripted:
        raise TypeError(
            f"{scripted[0]} is a TorchScript module (torch.jit.script or torch.jit.trace): its layers run "
            "inside a compiled graph that hooks cannot see; explain the nn.Module before scripting it "
            "(the CAM of the eager model is the scripted model's)"
        )


def check_model_differentiable(model: nn.Module, method: str, name: str = "model") -> None:
    """Refuse a gradient method on a model with quantized modules (``torch.ao`` quantization).

    Their kernels have no backward: the gradients through them are silently zero, the map blank.

    Raises:
        ValueError: naming the first quantized module and the methods that work.
    """
    for path, module in model.named_modules():
        if type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
            kind = f"{type(module).__module__}.{type(module).__name__}"
            raise ValueError(
                f"{name} has quantized layers ({path or name}: {kind}) "
                f"that have no gradients, and {method} needs gradients; use a gradient-free method "
                "(ScoreCAM, AblationCAM, EigenCAM, ...) on it, or explain the float model before "
                "quantization"
            )


def check_call_options(
    targets: Any, target_category: Any, *, aug_smooth: object, eigen_smooth: object
) -> Any:
    """A CAM call's targets (``target_category``, the original API's name, when given) after checking
    that the two are not both given and that the flags are booleans."""
    if target_category is not None:
        if targets is not None:
            raise TypeError("pass either targets=... or target_category=..., not both")
        targets = target_category
    for name, flag in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}")
    return targets
