"""The single-photo command's argument parser: its options and help, usage errors in one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytorch_grad_cam._core.validation import int_option
from pytorch_grad_cam.cli.methods import FULL_OPTION
from pytorch_grad_cam.cli.models import DEFAULT_MODEL
from pytorch_grad_cam.cli.task_command import OneLineParser
from pytorch_grad_cam.registry import METHODS, TASKS


def program_name() -> str:
    """How the command was started, for its messages: ``cam.py``, else ``pytorch-grad-cam``."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "cam.py" if script == "cam.py" else "pytorch-grad-cam"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line's argument parser (``prog``: the name in messages; default: how it was run)."""
    parser = OneLineParser(
        prog=prog or program_name(),
        description="Class activation maps of a photo: which pixels made the classifier pick a class.",
        epilog="Example: python cam.py --image-path examples/chelsea.png --method gradcam. "
        "For every image of a folder: python cam.py --image-dir DIR --output-dir OUT [--method M] "
        "(python cam.py --image-dir DIR --help lists its options; torchrun runs it on several processes). "
        "For a detector's boxes: python cam.py --task detection --model NAME, for a segmenter's classes: "
        "python cam.py --task segmentation --model NAME (their --help lists their options).",
    )
    parser.add_argument("--image-path", required=True, help="the photo (PNG, JPEG, ...)")
    parser.add_argument(  # in the usage line; cam.py / pytorch-grad-cam hand it to the dataset runner
        "--image-dir",
        help="a folder of images, instead of --image-path: the dataset runner explains every one "
        "(--image-dir DIR --help lists its options)",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="detection: --model is a detector and every predicted box gets its own map "
        "(--task detection --help); segmentation: --model is a segmenter and every predicted class "
        "gets its own map (--task segmentation --help)",
    )
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
        help=f"{DEFAULT_MODEL} (default, offline), a torchvision classifier (resnet50, vgg16, ...), "
        "timm:NAME, or package.module:callable / file.py:callable returning an nn.Module",
    )
    parser.add_argument(
        "--weights", default=None, help="a state_dict file for --model instead of its ImageNet weights"
    )
    parser.add_argument(
        "--target-layer",
        default=None,
        help="dotted path of the layer to explain, e.g. layer4.-1 or features.28; 'auto' for the "
        "layer search (default: the model family's usual layer, else auto)",
    )
    parser.add_argument(
        "--category",
        default=None,
        help="the ImageNet class to explain: an index (281) or a name ('tabby'); default: the top class",
    )
    parser.add_argument("--output-dir", default=".", help="where the images are written (default: .)")
    parser.add_argument(
        FULL_OPTION,
        action="store_true",
        help="with --method all on a CPU, run sscam and iscam with all their samples (35 and 10: tens of "
        "minutes) instead of 2 each",
    )
    parser.add_argument(
        "--batch-size",
        type=int_option(),
        default=None,
        help="images per forward pass for the methods that run many (scorecam, ablationcam)",
    )
    return parser
