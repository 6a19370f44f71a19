"""Detection runs of the dataset runner (``task="detection"``): one CAM per predicted box.

Per batch, the detector runs once (no gradients) on the images of each input shape and gives each
image its boxes above ``box_threshold`` (the ``max_boxes`` best,
:func:`~pytorch_grad_cam.detection.outputs.model_detections`). Each image's boxes are then explained
one map each: the image is repeated once per box, each copy with its own
:class:`~pytorch_grad_cam.detection.targets.DetectionTarget` (as ``cam.py --task detection``
does), in CAM calls of at most ``batch_size`` copies. An image's maps depend on that image alone.

The writer saves box ``k`` of image ``<name>`` as ``<name>.box<k>.npy`` (and
``<name>.box<k>.overlay.jpg`` with the box drawn), highest score first, and the image's manifest
record lists its boxes (:func:`box_records`). An image with no box above the threshold is complete
with an empty list.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.compute import finite_row, timed_groups
from pytorch_grad_cam.batch.files import whole_file
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.detection.outputs import model_detections
from pytorch_grad_cam.detection.targets import predictions_to_targets
from pytorch_grad_cam.errors import ConfigError
from pytorch_grad_cam.registry import DETECTION_METHODS, TASKS


@dataclasses.dataclass(frozen=True)
class DetectionOptions:
    """What a detection run explains: the boxes scoring above ``box_threshold``, the ``max_boxes`` best."""

    box_threshold: float
    max_boxes: int

    def settings(self) -> dict[str, Any]:
        """The run's settings entries (``run.json``): a resume with other values is refused."""
        return {"task": "detection", "box_threshold": self.box_threshold, "max_boxes": self.max_boxes}


def detection_options(
    task: str,
    box_threshold: float,
    max_boxes: int,
    *,
    method_name: str,
    targets: Any,
    html: bool,
    aug_smooth: bool,
) -> DetectionOptions | None:
    """Check the detection arguments of :func:`~pytorch_grad_cam.batch.run`; None for a classification run.

    Raises:
        ConfigError: an unknown task (not classification, detection or segmentation: segmentation's
            options are :func:`~pytorch_grad_cam.batch.segmentation.segmentation_options`'), a
            threshold outside [0, 1), ``max_boxes`` below 1, or an
            option a detection run does not take (``targets``, ``html``, ``aug_smooth``, a method
            outside :data:`DETECTION_METHODS`).
    """
    if task not in TASKS:
        raise ConfigError(f"task must be 'classification', 'detection' or 'segmentation'; got {task!r}")
    if task != "detection":
        return None
    if (
        isinstance(box_threshold, bool)
        or not isinstance(box_threshold, numbers.Real)
        or not 0.0 <= box_threshold < 1.0
    ):
        raise ConfigError(f"box_threshold must be a number in [0, 1); got {box_threshold!r}")
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
        raise ConfigError(f"max_boxes must be an int >= 1; got {max_boxes!r}")
    if method_name not in DETECTION_METHODS:
        raise ConfigError(
            f"method {method_name!r} does not explain detector boxes here; task='detection' takes one of "
            f"{', '.join(DETECTION_METHODS)}"
        )
    refused = [
        name
        for name, given in (
            ("targets", targets is not None),
            ("html", html),
            ("aug_smooth", aug_smooth),
        )
        if given
    ]
    if refused:
        raise ConfigError(
            f"task='detection' explains the boxes the detector predicts; it does not take "
            f"{', '.join(refused)} (targets: the boxes are the targets; html: the gallery shows one map "
            "per image; aug_smooth: a flipped view moves the objects but not the boxes)"
        )
    return DetectionOptions(float(box_threshold), int(max_boxes))


@dataclasses.dataclass
class BoxesResult:
    """One image's boxes and their maps.

    Attributes:
        cams: ``(K, H, W)`` float32 maps in [0, 1] at the model's input size, one per box.
        boxes: ``(K, 4)`` ``(x1, y1, x2, y2)`` in the model input's pixels.
        labels: ``K`` class indices.
        scores: ``K`` scores, 6 decimals.
        input_size: ``(H, W)`` of the model's input.
    """

    cams: torch.Tensor
    boxes: torch.Tensor
    labels: list[int]
    scores: list[float]
    input_size: tuple[int, int]


def _explain(cam: BaseCAM, x: torch.Tensor, found: Any, chunk: int, eigen_smooth: bool) -> torch.Tensor:
    """``(K, H, W)``: one map per box of one image ``x`` ``(1, C, H, W)``, in CAM calls of at most
    ``chunk`` copies of the image."""
    targets = predictions_to_targets(found, each_box=True)
    maps = [
        cam.compute(x.repeat(len(part), 1, 1, 1), targets=part, eigen_smooth=eigen_smooth)
        for part in (targets[start : start + chunk] for start in range(0, len(targets), chunk))
    ]
    return torch.cat(maps) if maps else torch.zeros((0, *x.shape[-2:]))


def detection_batches(
    loader: DataLoader,
    cam: BaseCAM,
    options: DetectionOptions,
    *,
    device: torch.device,
    chunk: int,
    eigen_smooth: bool,
) -> Iterator[tuple[list[tuple[Sample, BoxesResult | None]], float, float]]:
    """Per batch: the samples with their boxes and maps (None for a bad file), CAM seconds,
    data-wait seconds (as :func:`~pytorch_grad_cam.batch.compute.timed_batches`)."""
    model: nn.Module = cam.model

    def explain(group: list[Sample]) -> dict[int, BoxesResult]:
        results: dict[int, BoxesResult] = {}
        batch = torch.stack([sample.tensor for sample in group]).to(device)
        found = model_detections(
            model, batch, score_threshold=options.box_threshold, max_detections=options.max_boxes
        )
        for row, sample in enumerate(group):
            detections = found[row]
            x = batch[row : row + 1]
            maps = _explain(cam, x, detections, chunk, eigen_smooth)
            finite = torch.tensor(
                [all(bool(torch.isfinite(t).all()) for t in (maps, detections.scores, detections.boxes))]
            )
            if not finite_row(sample, finite, 0):
                continue
            results[sample.index] = BoxesResult(
                maps,
                detections.boxes.detach().float().cpu(),
                [int(label) for label in detections.labels.tolist()],
                [round(float(score), 6) for score in detections.scores.tolist()],
                (int(x.shape[-2]), int(x.shape[-1])),
            )
        return results

    return timed_groups(loader, explain)


def box_paths(name: str, k: int, *, overlay: bool) -> dict[str, str | None]:
    """The files of box ``k`` of image ``name``, relative to the output folder."""
    return {"cam": f"{name}.box{k}.npy", "overlay": f"{name}.box{k}.overlay.jpg" if overlay else None}


def entries_complete(record: dict, output_dir: Path, *, overlay: bool) -> bool:
    """Whether a detection record's box files, or a segmentation record's class files (maps, and
    overlays when wanted), are all whole."""
    boxes = record.get("boxes" if record.get("task") == "detection" else "classes")
    if not isinstance(boxes, list):
        return False
    wanted = ("cam", "overlay") if overlay else ("cam",)
    return all(
        isinstance(box, dict) and isinstance(box.get(key), str) and whole_file(output_dir / box[key])
        for box in boxes
        for key in wanted
    )


def scaled_boxes(boxes: torch.Tensor, input_size: Sequence[int], size: Sequence[int]) -> list[list[float]]:
    """``(K, 4)`` input-pixel boxes in the pixels of a map of ``size`` ``(H, W)``, 2 decimals."""
    scale = torch.tensor([size[1] / input_size[1], size[0] / input_size[0]] * 2, dtype=torch.float32)
    return [[round(float(v), 2) for v in box] for box in (boxes * scale).tolist()]
