"""The command line for detectors (``cam.py --task detection``): one CAM per predicted box.

Example:
    python cam.py --task detection --model fasterrcnn_mobilenet_v3_large_fpn --image-path photo.jpg

runs the detector on the photo (resized to ``--image-size`` square), keeps the boxes it predicts
with a score above ``--box-threshold`` (the ``--max-boxes`` best), explains each with its own
:class:`~pytorch_grad_cam.detection.targets.DetectionTarget`, prints one line per box and
writes ``{method}_box{k}.jpg`` per box into ``--output-dir``: the map over the photo with the box,
its label and its score (:func:`~pytorch_grad_cam.utils.drawing.draw_box`). A box of zero width or
height (an untrained FCOS predicts many) is matched like any other and drawn one pixel wide. When no
box passes the threshold it says so in one line and exits with status 0 (nothing to explain is not
an error).

Models: torchvision's detectors (``fasterrcnn_*``, ``maskrcnn_*``, ``retinanet_*``, ``fcos_*``,
``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``), built offline with random weights (their boxes
are then meaningless) unless ``--weights FILE`` (a state dict of the same architecture, COCO's 91
classes); and ``yolo:PATH``, an ultralytics YOLOv5u/v8/11 detector from a ``.pt`` file or a model
``.yaml`` (random weights), when ultralytics is installed. This module imports ultralytics only for a
``yolo:`` model; the library never does. Target layers and reshape are
:func:`~pytorch_grad_cam.detection.layers.detector_target_layers`'.

Methods: the gradient methods and EigenCAM (:data:`DETECTION_METHODS`). Usage errors end with one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.validation import int_option
from pytorch_grad_cam.cli.checks import resolve_device
from pytorch_grad_cam.cli.models import read_state_dict
from pytorch_grad_cam.cli.task_command import OneLineParser, run_task, task_method
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.outputs import Detections, model_detections
from pytorch_grad_cam.detection.targets import predictions_to_targets
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.registry import DETECTION_METHODS, METHODS
from pytorch_grad_cam.utils.drawing import draw_box, load_photo, photo_array, save_jpg
from pytorch_grad_cam.utils.image import show_cam_on_image

__all__ = ["DETECTION_METHODS", "TORCHVISION_DETECTORS", "build_parser", "load_detector", "main", "run"]

#: torchvision's detector builders that ``--model`` accepts.
TORCHVISION_DETECTORS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
)


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text}")
    return value


def build_parser(prog: str = "cam.py") -> argparse.ArgumentParser:
    """The ``--task detection`` argument parser."""
    parser = OneLineParser(
        prog=f"{prog} --task detection",
        description="One class activation map per box a detector predicts on a photo.",
    )
    parser.add_argument("--image-path", required=True, help="the photo (PNG, JPEG, ...)")
    parser.add_argument(
        "--model",
        required=True,
        help=f"a torchvision detector ({', '.join(TORCHVISION_DETECTORS)}) or yolo:PATH (.pt or .yaml)",
    )
    parser.add_argument("--weights", default=None, help="a state_dict file of a torchvision detector")
    parser.add_argument(
        "--method", default="gradcam", help=f"one of {', '.join(DETECTION_METHODS)} (default: gradcam)"
    )
    parser.add_argument(
        "--box-threshold",
        type=_threshold,
        default=0.5,
        help="explain the boxes scoring above this (default: 0.5)",
    )
    parser.add_argument(
        "--max-boxes", type=int_option(), default=10, help="explain at most this many, the best (default: 10)"
    )
    parser.add_argument(
        "--image-size",
        type=int_option(minimum=32),
        default=640,
        help="the photo is resized to this square (YOLO: a multiple of 32; default: 640)",
    )
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda (default: cpu)")
    parser.add_argument("--output-dir", default=".", help="where the pictures are written (default: .)")
    return parser


def _torchvision_detector(
    name: str, weights: str | None, size: int, threshold: float
) -> tuple[nn.Module, Callable[[int], str], bool]:
    from torchvision.models import detection
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    torch.manual_seed(0)
    options: dict[str, Any] = {"weights": None, "weights_backbone": None}
    if not name.startswith("ssd"):  # min_size = max_size = the image size: no rescaling inside
        options.update(min_size=size, max_size=size)
    # the detector's own score threshold: the command's, so that it keeps every box above it
    options["box_score_thresh" if "rcnn" in name else "score_thresh"] = threshold
    model = getattr(detection, name)(**options)
    if weights is not None:
        state = read_state_dict(weights)  # a pickle with code is refused, never loaded
        try:
            model.load_state_dict(state)
        except (OSError, RuntimeError, ValueError) as error:
            message = " ".join(str(error).split())[:300]
            raise UsageError(f"--weights {weights}: not a state dict of {name} ({message})") from None
    names = list(FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"])
    return model.eval(), lambda k: names[k] if 0 <= k < len(names) else f"class {k}", weights is None


def _yolo_detector(path: str) -> tuple[nn.Module, Callable[[int], str], bool]:
    try:
        from ultralytics import YOLO
    except ImportError:
        raise UsageError(
            f"--model yolo:{path} needs ultralytics (AGPL-3.0), which is not installed: "
            "pip install ultralytics"
        ) from None
    if not (path.endswith(".yaml") or Path(path).is_file()):
        raise UsageError(f"--model yolo:{path}: no such file (a .pt file, or a model .yaml: yolov8n.yaml)")
    torch.manual_seed(0)
    try:
        model = YOLO(path, verbose=False)
    except Exception as error:  # ultralytics raises many kinds for a file it cannot read
        message = f"{type(error).__name__}: {error}"
        raise UsageError(f"--model yolo:{path}: ultralytics cannot load it ({message})") from None
    names = model.model.names
    random_weights = path.endswith(".yaml")
    return model, lambda k: str(names.get(k, k)) if isinstance(names, dict) else str(k), random_weights


def load_detector(
    name: str, weights: str | None, image_size: int, threshold: float
) -> tuple[nn.Module, Callable[[int], str], bool]:
    """Build ``--model``: the detector, its label -> name function, and whether its weights are random.

    Raises:
        UsageError: an unknown model, ultralytics missing for ``yolo:``, unreadable weights.
    """
    if name.startswith("yolo:"):
        if weights is not None:
            raise UsageError("--weights is for torchvision detectors; a YOLO's weights are its .pt file")
        if image_size % 32:
            raise UsageError(f"--image-size must be a multiple of 32 for YOLO (its stride); got {image_size}")
        return _yolo_detector(name[len("yolo:") :])
    key = name.strip().lower()
    if key not in TORCHVISION_DETECTORS:
        close = difflib.get_close_matches(key, TORCHVISION_DETECTORS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(
            f"--model {name}: not a detector this command knows; {hint}choose a torchvision detector "
            f"({', '.join(TORCHVISION_DETECTORS)}) or yolo:PATH"
        )
    return _torchvision_detector(key, weights, image_size, threshold)


def _explain(cam: Any, x: torch.Tensor, found: Detections) -> np.ndarray:
    """``(N, H, W)``: one map per box (the photo repeated once per box, each with its own target)."""
    targets = predictions_to_targets(found, each_box=True)
    return cam(x.repeat(len(targets), 1, 1, 1), targets)


def run(args: argparse.Namespace, out: TextIO) -> list[Path]:
    """Carry out a parsed ``--task detection`` command line; returns the pictures written."""
    method = task_method(args.method, DETECTION_METHODS, "detector boxes")
    device = resolve_device(False, args.device)
    model, label_name, random_weights = load_detector(
        args.model, args.weights, args.image_size, args.box_threshold
    )
    rgb = photo_array(load_photo(args.image_path), (args.image_size, args.image_size))
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().to(device)  # [0, 1] RGB
    model.to(device)
    if random_weights:
        print(f"note: {args.model} has random weights, so its boxes are meaningless", file=out)
    # one more than --max-boxes: enough to tell whether some were left out (YOLO's NMS stops there)
    (found,) = model_detections(
        model, x, score_threshold=args.box_threshold, max_detections=args.max_boxes + 1
    )
    if found.boxes.shape[0] == 0:
        print(f"no box scores above --box-threshold {args.box_threshold}: nothing to explain", file=out)
        return []
    more = " (and more: --max-boxes)" if found.boxes.shape[0] > args.max_boxes else ""
    found = Detections(*(None if part is None else part[: args.max_boxes] for part in found))
    count = len(found.boxes)
    print(f"{args.model}: {count} boxes above --box-threshold {args.box_threshold}{more}", file=out)
    layers, reshape_transform = detector_target_layers(model)
    cam = METHODS[method].cls(model, layers, reshape_transform=reshape_transform)
    maps = _explain(cam, x, found)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (cam_map, box, label, score) in enumerate(zip(maps, found.boxes, found.labels, found.scores)):
        text = f"{label_name(int(label))} {float(score):.2f}"
        picture = draw_box(show_cam_on_image(rgb, cam_map, use_rgb=True), box.tolist(), text)
        path = save_jpg(output_dir / f"{method}_box{k}.jpg", picture)
        written.append(path)
        corners = ", ".join(f"{float(v):.0f}" for v in box)
        print(f"box {k}: {text} at ({corners}) -> {path}", file=out)
    return written


def main(argv: Sequence[str] | None = None, *, prog: str = "cam.py") -> int:
    """Run ``--task detection``; returns the exit status: 0 (also when no box passes the threshold),
    1 when the method fails on the model (one line on stderr), 2 after a usage error."""
    return run_task(build_parser(prog), run, argv)
