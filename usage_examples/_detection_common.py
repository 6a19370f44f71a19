"""Shared parts of the detector examples: the command line, one map per box, the drawings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.detection.outputs import Detections
from pytorch_grad_cam.detection.targets import predictions_to_targets
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.drawing import draw_box
from pytorch_grad_cam.utils.image import show_cam_on_image


def parser(
    description: str, image_size: int, weights_help: str, output_dir: str = "detection_output"
) -> argparse.ArgumentParser:
    """The options every detector example takes (``output_dir``: the default ``--output-dir``, a
    folder of its own: the pictures never land in the current folder)."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--image-path", default=None, help="the photo (default: scikit-image's coffee cup)")
    result.add_argument("--method", default="gradcam", choices=sorted(METHODS), help="the CAM method")
    result.add_argument("--weights", default=None, help=weights_help)
    result.add_argument(
        "--image-size", type=int, default=image_size, help="the photo is resized to this square"
    )
    result.add_argument(
        "--score-threshold", type=float, default=None, help="explain boxes scoring above this"
    )
    result.add_argument("--max-boxes", type=int, default=3, help="explain at most this many boxes")
    result.add_argument(
        "--output-dir",
        default=output_dir,
        help=f"where the images go (default: {output_dir}/, made if missing)",
    )
    return result


def top_boxes(found: Detections, max_boxes: int) -> Detections:
    """The ``max_boxes`` highest-scoring detections (``found`` is sorted by score)."""
    return Detections(*(None if part is None else part[:max_boxes] for part in found))


def explain_each_box(cam: BaseCAM, input_tensor: torch.Tensor, found: Detections) -> np.ndarray:
    """One map per box: the image repeated once per box, each copy with that box's target.

    Returns:
        ``(N, H, W)`` maps in [0, 1].
    """
    targets = predictions_to_targets(found, each_box=True)
    return cam(input_tensor.repeat(len(targets), 1, 1, 1), targets)


def save_box_maps(
    rgb: np.ndarray,
    maps: np.ndarray,
    found: Detections,
    label_name: Callable[[int], str],
    output_dir: str,
    prefix: str,
) -> list[Path]:
    """Write one image per box: its map over the photo, the box, and its label and score.

    Returns:
        the paths written, ``{prefix}_box{k}.png``.
    """
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for k, (cam_map, box, label, score) in enumerate(zip(maps, found.boxes, found.labels, found.scores)):
        overlay = show_cam_on_image(rgb, cam_map, use_rgb=True)
        picture = draw_box(overlay, box.tolist(), f"{label_name(int(label))} {float(score):.2f}")
        path = directory / f"{prefix}_box{k}.png"
        Image.fromarray(picture).save(path)
        written.append(path)
    return written


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad numbers before any model is built."""
    if args.max_boxes < 1:
        raise SystemExit(f"--max-boxes must be at least 1; got {args.max_boxes}")
    if args.image_size < 32:
        raise SystemExit(f"--image-size must be at least 32; got {args.image_size}")


def labels_of(names: Sequence[str] | dict) -> Callable[[int], str]:
    """A label-to-name function from a list (torchvision) or dict (ultralytics, HuggingFace)."""

    def name(label: int) -> str:
        if isinstance(names, dict):
            return str(names.get(label, label))
        return names[label] if 0 <= label < len(names) else str(label)

    return name
