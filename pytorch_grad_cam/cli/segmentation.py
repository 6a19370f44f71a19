"""The command line for segmenters (``cam.py --task segmentation``): one CAM per predicted class.

Example:
    python cam.py --task segmentation --model lraspp_mobilenet_v3_large --image-path photo.jpg

runs the segmenter on the photo (resized to ``--image-size`` square, normalised as the model
expects), takes its argmax mask and, for every class covering at least ``--min-area`` of it
(default 0.01, one hundredth of the output's pixels; class 0, the background of torchvision's
segmenters, is a class like any other), explains that class with
:class:`~pytorch_grad_cam.utils.model_targets.SemanticSegmentationTarget` (the class's scores
summed over its own predicted mask), prints one line per class (its index, name and share of the
image) and writes ``{method}_class{k}.jpg`` per class ``k`` into ``--output-dir``: the map over
the photo with the class's mask outlined and labelled
(:func:`~pytorch_grad_cam.utils.drawing.draw_mask`). The classes come largest first. When no
class covers ``--min-area`` it says so in one line and exits with status 0.

Models: torchvision's segmenters (:data:`TORCHVISION_SEGMENTERS`; Pascal VOC's 21 classes, built
offline with random weights, so their masks are meaningless, unless ``--weights FILE``, a state
dict of the same architecture; an auxiliary head's entries are dropped), or your factory
``package.module:callable`` / ``path/to/file.py:callable`` returning a module whose output holds
``(B, K, H, W)`` class scores (a tensor, a ``{"out": ...}`` dict, a ``logits`` entry; ImageNet
normalisation, classes named ``class k``). The target layer: ``--target-layer PATH``, else the
automatic choice (:mod:`pytorch_grad_cam.cli.layer`), which never takes the class-score map.

Methods: :data:`~pytorch_grad_cam.registry.SEGMENTATION_METHODS`. Usage errors end with one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Sequence, TextIO

import torch

from pytorch_grad_cam._core.modes import set_eval_flags
from pytorch_grad_cam._core.segmentation import class_areas, dense_scores, segmentation_target
from pytorch_grad_cam._core.validation import int_option
from pytorch_grad_cam.cli import models
from pytorch_grad_cam.cli.checks import resolve_device
from pytorch_grad_cam.cli.layer import choose_target_layer
from pytorch_grad_cam.cli.task_command import OneLineParser, run_task, task_method
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.registry import METHODS, SEGMENTATION_METHODS
from pytorch_grad_cam.utils.drawing import draw_mask, load_photo, photo_array, save_jpg, to_input_tensor
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD, show_cam_on_image

__all__ = [
    "DEFAULT_MIN_AREA",
    "SEGMENTATION_METHODS",
    "TORCHVISION_SEGMENTERS",
    "build_parser",
    "class_name",
    "load_segmenter",
    "main",
    "min_area_option",
    "run",
]

#: torchvision's segmenter builders that ``--model`` accepts.
TORCHVISION_SEGMENTERS = (
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
)

#: ``--min-area``'s default: a class is explained when it covers at least 1% of the image.
DEFAULT_MIN_AREA = 0.01

#: torchvision's segmenters' input size (their weights' preset resizes to 520).
_TORCHVISION_SIZE = 520


def min_area_option(text: str) -> float:
    """An argparse ``type=`` for ``--min-area``: a share of the image in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share of the image in [0, 1]; got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share of the image in [0, 1]; got {text}")
    return value


def build_parser(prog: str = "cam.py") -> argparse.ArgumentParser:
    """The ``--task segmentation`` argument parser."""
    parser = OneLineParser(
        prog=f"{prog} --task segmentation",
        description="One class activation map per class a segmenter predicts on a photo.",
    )
    parser.add_argument("--image-path", required=True, help="the photo (PNG, JPEG, ...)")
    parser.add_argument(
        "--model",
        required=True,
        help=f"a torchvision segmenter ({', '.join(TORCHVISION_SEGMENTERS)}) or package.module:callable / "
        "file.py:callable returning one",
    )
    parser.add_argument("--weights", default=None, help="a state_dict file for --model")
    parser.add_argument(
        "--method", default="gradcam", help=f"one of {', '.join(SEGMENTATION_METHODS)} (default: gradcam)"
    )
    parser.add_argument(
        "--target-layer",
        default=None,
        help="dotted path of the layer to explain, e.g. backbone.layer4; default (or 'auto'): the "
        "automatic choice",
    )
    parser.add_argument(
        "--min-area",
        type=min_area_option,
        default=DEFAULT_MIN_AREA,
        help="explain the classes covering at least this share of the image, in [0, 1] "
        f"(default: {DEFAULT_MIN_AREA}; 0: every class present)",
    )
    parser.add_argument(
        "--image-size",
        type=int_option(minimum=8),
        default=None,
        help=f"the photo is resized to this square (default: {_TORCHVISION_SIZE} for torchvision's "
        "segmenters, 224 for a factory)",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda (default: cpu)")
    parser.add_argument("--output-dir", default=".", help="where the pictures are written (default: .)")
    return parser


def _torchvision_segmenter(name: str, weights: str | None) -> models.LoadedModel:
    from torchvision.models import segmentation

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = getattr(segmentation, name)(weights=None, weights_backbone=None, aux_loss=False)
    set_eval_flags(model)
    if weights is not None:
        state = models.read_state_dict(weights)  # a pickle with code is refused, never loaded
        state = {key: value for key, value in state.items() if not key.startswith("aux_classifier.")}
        try:
            model.load_state_dict(state)
        except (RuntimeError, ValueError) as error:
            message = " ".join(str(error).split())[:300]
            raise UsageError(f"--weights {weights}: not a state dict of {name} ({message})") from None
    categories = list(segmentation.FCN_ResNet50_Weights.DEFAULT.meta["categories"])  # Pascal VOC's 21
    return models.LoadedModel(
        name,
        model,
        categories,
        target_layer=None,
        reshape_transform=None,
        input_size=_TORCHVISION_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        random_weights=weights is None,
    )


def load_segmenter(name: str, weights: str | None) -> models.LoadedModel:
    """Build ``--model``: a torchvision segmenter or a factory, in eval mode, with no default layer.

    Raises:
        UsageError: an unknown model, a factory that fails, unreadable weights.
    """
    key = name.strip().lower().replace("-", "_")
    if key in TORCHVISION_SEGMENTERS:
        return _torchvision_segmenter(key, weights)
    if ":" in name and not name.strip().lower().startswith(models.TIMM_PREFIX):
        return models.load_model(name, weights)  # a factory
    close = difflib.get_close_matches(key, TORCHVISION_SEGMENTERS, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(
        f"--model {name}: not a segmenter this command knows; {hint}choose a torchvision segmenter "
        f"({', '.join(TORCHVISION_SEGMENTERS)}) or package.module:callable / file.py:callable"
    )


def class_name(categories: Sequence[str] | None, k: int) -> str:
    """Class ``k``'s name, or ``class k`` when the model has no names for its classes."""
    return str(categories[k]) if categories is not None and 0 <= k < len(categories) else f"class {k}"


def run(args: argparse.Namespace, out: TextIO) -> list[Path]:
    """Carry out a parsed ``--task segmentation`` command line; returns the pictures written."""
    method = task_method(args.method, SEGMENTATION_METHODS, "segmenter classes")
    device = resolve_device(False, args.device)
    loaded = load_segmenter(args.model, args.weights)
    size = args.image_size or loaded.input_size
    rgb = photo_array(load_photo(args.image_path), (size, size))
    model = loaded.model.to(device)
    x = to_input_tensor(rgb, loaded.mean, loaded.std).to(device)
    if loaded.random_weights:
        print(f"note: {args.model} has random weights, so its masks are meaningless", file=out)
    with torch.no_grad():
        scores = dense_scores(model(x), 1)
    if scores is None:
        raise UsageError(
            f"--model {args.model}: its output holds no (B, K, H, W) class scores (a tensor, a 'logits' "
            "or 'out' entry): not a segmenter"
        )
    (found,) = class_areas(scores, args.min_area)
    if not found:
        print(f"no class covers --min-area {args.min_area} of the image: nothing to explain", file=out)
        return []
    chosen = choose_target_layer(loaded, args.target_layer, x)
    print(chosen.reason, file=out)
    count = "1 class covers" if len(found) == 1 else f"{len(found)} classes cover"
    print(f"{args.model}: {count} --min-area {args.min_area} of the image", file=out)
    targets = [segmentation_target(scores, 0, k) for k, _ in found]
    cam = METHODS[method].cls(model, [chosen.layer], reshape_transform=chosen.reshape_transform)
    with cam:
        maps = cam(x.repeat(len(targets), 1, 1, 1), targets)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cam_map, target, (k, share) in zip(maps, targets, found):
        name = class_name(loaded.categories, k)
        picture = draw_mask(
            show_cam_on_image(rgb, cam_map, use_rgb=True), target.mask.numpy() > 0, f"{name} {share:.0%}"
        )
        path = save_jpg(output_dir / f"{method}_class{k}.jpg", picture)
        written.append(path)
        named = f" {name}" if loaded.categories is not None else ""
        print(f"class {k}{named}: {100 * share:.1f}% of the image -> {path}", file=out)
    return written


def main(argv: Sequence[str] | None = None, *, prog: str = "cam.py") -> int:
    """Run ``--task segmentation``; returns the exit status: 0 (also when no class covers
    ``--min-area``), 1 when the method fails on the model (one line on stderr), 2 after a usage error."""
    return run_task(build_parser(prog), run, argv)
