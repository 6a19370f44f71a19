"""The dataset runner's command line: ``python cam.py --image-dir DIR ...`` or
``python -m pytorch_grad_cam.batch ...``, and the ``--model`` loader it uses."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core.validation import int_option
from pytorch_grad_cam.batch.files import IMAGE_SUFFIXES
from pytorch_grad_cam.batch.plan import describe_os_error
from pytorch_grad_cam.batch.runner import run
from pytorch_grad_cam.cli import checks, models
from pytorch_grad_cam.cli.evaluate import add_evaluation_arguments, evaluate_command
from pytorch_grad_cam.cli.layer import choose_target_layer, is_auto
from pytorch_grad_cam.cli.models import DEFAULT_MODEL
from pytorch_grad_cam.errors import ConfigError, UsageError
from pytorch_grad_cam.registry import METHODS, TASKS, get_method


def load_model(
    name: str, weights: str | None = None
) -> tuple[nn.Module, list[nn.Module] | None, list[str] | None]:
    """A ``--model`` in eval mode, its default target layers (None: unknown) and class names (or None).

    The models are those of ``cam.py`` (:func:`pytorch_grad_cam.cli.models.load_model`):
    ``efficientnet_lite0`` (offline), a torchvision classifier, or a factory ``package.module:callable`` /
    ``path/to/file.py:callable``.

    Raises:
        UsageError: an unknown or unloadable model.
    """
    loaded = models.load_model(name, weights)
    layers = None
    if loaded.target_layer is not None:
        layers = [checks.find_layer(loaded.model, loaded.target_layer)[0]]
    return loaded.model, layers, loaded.categories


def _target_layers(
    loaded: models.LoadedModel, paths: list[str] | None, image_size: int | tuple[int, int]
) -> tuple[list[nn.Module], Any, str]:
    """The ``--target-layer`` layers, their reshape transform and the choice's line ("" for the
    user's own paths: the command prints how it chose, not what it was told).

    Omitted or ``auto``: one layer, as :func:`~pytorch_grad_cam.cli.layer.choose_target_layer`
    chooses it (the search runs on one seeded random image of ``image_size``).
    """
    if paths and len(paths) > 1 and any(is_auto(path) for path in paths):
        raise UsageError("--target-layer auto cannot be combined with other --target-layer paths")
    if paths and len(paths) > 1:
        layers = [checks.find_layer(loaded.model, path)[0] for path in paths]
        return layers, loaded.reshape_transform, ""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    probe = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    chosen = choose_target_layer(loaded, paths[0] if paths else None, probe)
    return [chosen.layer], chosen.reshape_transform, "" if paths and not is_auto(paths[0]) else chosen.reason


def _refuse(args: argparse.Namespace, explained: str, *, target_layer: bool) -> None:
    """The options ``--task detection`` / ``segmentation`` do not take (UsageError naming those given)."""
    refused = [
        option
        for option, given in (
            ("--category", args.category is not None),
            ("--html", args.html),
            ("--aug-smooth", args.aug_smooth),
            ("--target-layer", target_layer and bool(args.target_layer)),
        )
        if given
    ]
    if refused:
        raise UsageError(f"--task {args.task} explains {explained}; it does not take {', '.join(refused)}")


def _segmenter(args: argparse.Namespace, prog: str) -> tuple[models.LoadedModel, int | tuple[int, int]]:
    """``--task segmentation``: the segmenter (``cam.py --task segmentation``'s,
    :func:`~pytorch_grad_cam.cli.segmentation.load_segmenter`) and the input size."""
    from pytorch_grad_cam.cli.segmentation import load_segmenter

    _refuse(args, "each predicted class over its own mask", target_layer=False)
    if not 0.0 <= args.min_area <= 1.0:
        raise UsageError(f"--min-area must be a share of the image in [0, 1]; got {args.min_area}")
    loaded = load_segmenter(args.model, args.weights)
    if loaded.random_weights and os.environ.get("RANK", "0") == "0":  # once, under torchrun too
        sys.stderr.write(f"{prog}: note: {args.model} has random weights, so its masks are meaningless\n")
    return loaded, loaded.input_size if args.image_size is None else args.image_size


def _detector(args: argparse.Namespace, prog: str) -> tuple[nn.Module, list[nn.Module], Any, list[str], int]:
    """``--task detection``: the detector, its target layers and reshape, class names, input size.

    The detector is ``cam.py --task detection``'s (:func:`~pytorch_grad_cam.cli.detection.load_detector`:
    random weights offline unless ``--weights``; its own score threshold set to ``--box-threshold``).
    """
    from pytorch_grad_cam.cli.detection import load_detector
    from pytorch_grad_cam.detection.layers import detector_target_layers

    _refuse(args, "each predicted box with the detector's own layers", target_layer=True)
    size = 640 if args.image_size is None else args.image_size
    if not isinstance(size, int):
        raise UsageError(
            f"--image-size for --task detection is one number N (a square); got {size[0]}x{size[1]}"
        )
    if not 0.0 <= args.box_threshold < 1.0:
        raise UsageError(f"--box-threshold must be a number in [0, 1); got {args.box_threshold}")
    model, label_name, random_weights = load_detector(args.model, args.weights, size, args.box_threshold)
    if random_weights:
        sys.stderr.write(f"{prog}: note: {args.model} has random weights, so its boxes are meaningless\n")
    layers, reshape_transform = detector_target_layers(model)
    count = len(model.model.names) if args.model.startswith("yolo:") else 91  # COCO's 91 for torchvision
    return model, layers, reshape_transform, [label_name(k) for k in range(count)], size


def _size_argument(text: str) -> int | tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", text)
    if not match or int(match.group(1)) <= 0 or (match.group(2) is not None and int(match.group(2)) <= 0):
        raise argparse.ArgumentTypeError(f"expected N or HxW (positive pixels); got {text!r}")
    if match.group(2) is None:
        return int(match.group(1))
    return int(match.group(1)), int(match.group(2))


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The batch command's arguments."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Save the CAM of every image of a folder tree, or score methods with --evaluate "
        "(resumable; scales out with torchrun).",
    )
    parser.add_argument("--image-dir", required=True, help="folder of images, searched recursively")
    parser.add_argument("--output-dir", required=True, help="where the CAMs and manifest.jsonl go")
    parser.add_argument(
        "--method",
        default="gradcam",
        help=f"one of: {', '.join(METHODS)} (default gradcam); with --evaluate, several: gradcam,layercam",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{DEFAULT_MODEL} (default, offline), a torchvision classifier, or package.module:callable / "
        "file.py:callable returning an nn.Module",
    )
    parser.add_argument("--weights", help="a state_dict file to load into the model")
    parser.add_argument(
        "--target-layer",
        action="append",
        help="dotted path of a target layer (repeat for several), or 'auto' for the layer search; default: "
        "the model family's usual layer, else auto",
    )
    parser.add_argument("--batch-size", type=int_option(), default=32)
    parser.add_argument(
        "--num-workers", type=int_option(minimum=0), default=2, help="DataLoader workers decoding images"
    )
    parser.add_argument(
        "--image-size",
        type=_size_argument,
        default=None,
        help="model input size: N or HxW (default: the model's, 224 for most)",
    )
    parser.add_argument(
        "--cam-size", type=_size_argument, help="saved CAM size: N or HxW (default: the image's)"
    )
    parser.add_argument("--save-overlay", action="store_true", help="also write <image>.overlay.jpg")
    parser.add_argument("--html", action="store_true", help="also write the index.html gallery")
    parser.add_argument("--per-page", type=int_option(), default=100, help="gallery images per page")
    parser.add_argument(
        "--category",
        help="explain this class in every image: an index (281) or a name ('tiger cat'); default: the top",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="detection: --model is a detector (a torchvision detector name or yolo:PATH) and every box "
        "above --box-threshold gets its own map, <image>.box<k>.npy; segmentation: --model is a segmenter "
        "(a torchvision segmenter name or a factory) and every predicted class covering --min-area gets "
        "its own map, <image>.class<k>.npy",
    )
    parser.add_argument(
        "--box-threshold", type=float, default=0.5, help="detection: explain boxes scoring above this"
    )
    parser.add_argument(
        "--max-boxes", type=int_option(), default=10, help="detection: at most this many boxes per image"
    )
    parser.add_argument(
        "--min-area",
        type=float,
        default=0.01,
        help="segmentation: explain the classes covering at least this share of the image, in [0, 1] "
        "(default 0.01; 0: every class present)",
    )
    parser.add_argument("--aug-smooth", action="store_true")
    parser.add_argument("--eigen-smooth", action="store_true")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda:LOCAL_RANK when available)")
    parser.add_argument("--no-resume", action="store_true", help="recompute images whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_evaluation_arguments(parser)
    return parser


#: The runner's Python words -> the command line's (its messages serve both).
_COMMAND_WORDS = (
    ("resume=False (--no-resume)", "--no-resume"),
    ("output_dir", "--output-dir"),
)


def in_command_words(message: str) -> str:
    """A runner message with its keyword arguments named as the command's options (one line)."""
    message = " ".join(message.split())
    for python, option in _COMMAND_WORDS:
        message = message.replace(python, option)
    return message


def _has_images(root: Path, output_dir: Path) -> bool:
    """Whether the run would find an image under ``root`` (stops at the first; as ``find_images``)."""
    excluded = output_dir.resolve()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".") and (here / d).resolve() != excluded]
        if any(not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES) for name in files):
            return True
    return False


@contextlib.contextmanager
def _notes(prog: str) -> Iterator[None]:
    """The run's warnings (no images, a recovered lock) as one line each on stderr: ``prog: note: ...``."""

    def show(message: Warning | str, *args: object, **kwargs: object) -> None:
        sys.stderr.write(f"{prog}: note: {' '.join(str(message).split())}\n")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """The command line: ``python -m pytorch_grad_cam.batch --image-dir DIR --output-dir OUT ...``.

    Returns:
        0; 2 after a usage error or a filesystem problem with the output folder (one line on
        stderr: a file in the way, no permission, a full disk, a folder in use by another run); 1
        when the model or the method fails on every image alike (one line: the setup's error);
        130 after Ctrl-C (one line; the finished images are kept). Bad image files do not fail the
        run: they are listed in the manifest. Notes (no images, a recovered lock) are one line each
        on stderr.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        if not Path(args.image_dir).is_dir():
            raise UsageError(f"--image-dir {args.image_dir}: no such folder")
        if args.evaluate and args.task != "classification":
            raise UsageError(f"--evaluate does not take --task {args.task} (it scores classifiers)")
        mean = std = None  # detection: the detector's own input, [0, 1] RGB
        if args.task == "detection":
            model, layers, reshape_transform, class_names, image_size = _detector(args, parser.prog)
            reason = ""
        else:
            if args.task == "segmentation":
                loaded, image_size = _segmenter(args, parser.prog)
            else:
                loaded = models.load_model(args.model, args.weights)
                note = loaded.random_weights_note()
                if note is not None and os.environ.get("RANK", "0") == "0":  # once, under torchrun too
                    sys.stderr.write(f"{parser.prog}: note: {note}\n")
                image_size = loaded.input_size if args.image_size is None else args.image_size
            model, class_names, mean, std = loaded.model, loaded.categories, loaded.mean, loaded.std
            layers, reshape_transform, reason = _target_layers(loaded, args.target_layer, image_size)
        if args.device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            try:
                device = torch.device(args.device)
            except RuntimeError:
                raise UsageError(f"--device {args.device}: not a device (cpu, cuda, cuda:1, ...)") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise UsageError(f"--device {args.device}: CUDA is not available")
        try:  # before the folder's check: the first mistake on the line first
            for method in args.method.split(",") if args.evaluate else [args.method]:
                get_method(method.strip())
        except ValueError as error:
            raise UsageError(str(error)) from None
        category = None if args.category is None else checks.parse_category(args.category, class_names)
        if not _has_images(Path(args.image_dir), Path(args.output_dir)):
            raise UsageError(
                f"--image-dir {args.image_dir}: no images in it or its subfolders "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        if args.evaluate:
            with _notes(parser.prog):
                summary = evaluate_command(
                    args, loaded, layers, reshape_transform, image_size, device, category
                )
            if summary.rank == 0:
                sys.stdout.write(
                    (f"{reason}\n" if reason else "") + summary.leaderboard + "\n" + summary.line() + "\n"
                )
            return 0
        with _notes(parser.prog):
            summary = run(
                model,
                layers,
                args.image_dir,
                args.method,
                output_dir=args.output_dir,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                image_size=image_size,
                cam_size=args.cam_size,
                mean=mean,
                std=std,
                save_overlay=args.save_overlay,
                html=args.html,
                per_page=args.per_page,
                targets=category,
                class_names=class_names,
                reshape_transform=reshape_transform,
                aug_smooth=args.aug_smooth,
                eigen_smooth=args.eigen_smooth,
                device=device,
                resume=not args.no_resume,
                progress=False if args.no_progress else None,
                task=args.task,
                box_threshold=args.box_threshold,
                max_boxes=args.max_boxes,
                min_area=args.min_area,
            )
    except (UsageError, ConfigError) as error:
        sys.stderr.write(f"{parser.prog}: error: {in_command_words(str(error))}\n")
        return 2
    except OSError as error:  # the output folder: full, read-only, no permission, a file in the way
        message = in_command_words(describe_os_error(error, Path(args.output_dir)))
        sys.stderr.write(f"{parser.prog}: error: {message}\n")
        return 2
    except (ValueError, TypeError, RuntimeError) as error:  # the setup: every image failed the same way
        sys.stderr.write(f"{parser.prog}: error: {type(error).__name__}: {' '.join(str(error).split())}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C: every finished batch is kept, and a rerun resumes
        sys.stderr.write(
            f"{parser.prog}: interrupted; the finished images are kept: "
            "run the same command again to resume\n"
        )
        return 130
    if summary.rank == 0:  # the layer's line with the summary: a refused run's stdout stays empty
        sys.stdout.write((f"{reason}\n" if reason else "") + summary.line() + "\n")
    return 0
