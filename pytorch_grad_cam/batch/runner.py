"""The run: :func:`run` checks its arguments, plans, computes and writes every batch of this process.

See :mod:`pytorch_grad_cam.batch` for the work unit, resuming and processes.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pytorch_grad_cam._core.validation import positive_int
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.arguments import (
    check_flags,
    input_source,
    method_class,
    normalisation,
    pair,
    show_progress,
)
from pytorch_grad_cam.batch.compute import timed_batches
from pytorch_grad_cam.batch.detection import (
    DetectionOptions,
    detection_batches,
    detection_options,
)
from pytorch_grad_cam.batch.evaluate import EvaluationSummary
from pytorch_grad_cam.batch.evaluate import evaluate as evaluate_dataset
from pytorch_grad_cam.batch.files import append_only
from pytorch_grad_cam.batch.finish import finish_run
from pytorch_grad_cam.batch.manifest import SHARD_DIR
from pytorch_grad_cam.batch.plan import make_plan
from pytorch_grad_cam.batch.segmentation import (
    SegmentationOptions,
    segmentation_batches,
    segmentation_options,
)
from pytorch_grad_cam.batch.shard import record_batches
from pytorch_grad_cam.batch.sources import DatasetSamples, FolderSamples, as_list
from pytorch_grad_cam.batch.summary import BatchSummary
from pytorch_grad_cam.batch.world import World, join_world, resolve_device
from pytorch_grad_cam.batch.writer import Writer
from pytorch_grad_cam.errors import ConfigError


def run(
    model: nn.Module,
    target_layers: nn.Module | Sequence[nn.Module],
    dataset_or_dir: str | os.PathLike | Dataset,
    method: str | type[BaseCAM] = "gradcam",
    *,
    output_dir: str | os.PathLike,
    batch_size: int = 32,
    num_workers: int = 2,
    image_size: int | tuple[int, int] = 224,
    cam_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    save_overlay: bool = False,
    html: bool = False,
    per_page: int = 100,
    targets: int | Callable[[Any], int] | None = None,
    class_names: Sequence[str] | None = None,
    reshape_transform: Callable[[Any], torch.Tensor] | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    device: torch.device | str | None = None,
    resume: bool = True,
    progress: bool | None = None,
    task: str = "classification",
    box_threshold: float = 0.5,
    max_boxes: int = 10,
    min_area: float = 0.01,
    evaluate: bool | Mapping[str, Any] = False,
) -> BatchSummary | EvaluationSummary:
    """Compute and save the CAM of every image of a folder tree or a dataset.

    Call it the same way in every process of a ``torchrun`` job: the processes share the work.

    Args:
        model: the classifier (left as it was, except moved to ``device``).
        target_layers: the layers to explain, as for :class:`~pytorch_grad_cam.base_cam.BaseCAM`.
        dataset_or_dir: a folder (searched recursively for .jpg/.jpeg/.png/.webp/.bmp/.tif/.tiff;
            each image is decoded to RGB, squashed to ``image_size`` and normalised with ``mean``
            and ``std``), or a map-style dataset whose items are ``(tensor, meta)`` (or a bare
            tensor), the tensor a floating ``(C, H, W)`` model input. A dataset's images are named
            by their index, zero-padded (``000042``); ``meta`` goes into the manifest (as ``repr``
            unless JSON can hold it) and is passed to a ``targets`` callable.
        method: a name of :data:`pytorch_grad_cam.registry.METHODS` (``"gradcam"``, ...) or a
            :class:`BaseCAM` subclass.
        output_dir: where the outputs go (created). It must not be the image folder; when it lies
            inside it, it is left out of the search.
        batch_size: images per batch (the unit of work; see :mod:`pytorch_grad_cam.batch`).
        num_workers: DataLoader worker processes decoding and resizing (0: in this process).
        image_size: the model's input size, ``int`` (square) or ``(height, width)`` (folders only).
        cam_size: the saved CAMs' size, ``int`` (square) or ``(height, width)``; None: each image's
            own size (a folder image's file size, a dataset tensor's size).
        mean: the per-channel normalisation mean (folders only). None: ImageNet's for
            classification, 0 for detection (torchvision detectors normalise inside).
        std: the per-channel normalisation std (folders only). None: ImageNet's, or 1 for detection.
            (Segmentation: ImageNet's, as torchvision's segmenters expect.)
        save_overlay: also write ``<name>.overlay.jpg``, the CAM coloured over the image.
        html: also write the gallery (``index.html``, ``index-2.html``, ...) and its thumbnails.
        per_page: images per gallery page.
        targets: the class each CAM explains: None, the top predicted class; an int, that class
            for every image; a callable, ``targets(meta) -> int`` for each image (``meta`` is the
            image's path relative to the folder, or the dataset item's meta).
        class_names: index -> name, for the manifest and the gallery.
        reshape_transform: as for :class:`BaseCAM` (transformers).
        aug_smooth: test-time augmentation smoothing (6 views per image).
        eigen_smooth: first principal component of the weighted activations.
        device: where the model runs. None: ``cuda:LOCAL_RANK`` under torchrun when CUDA is
            available, else the model's device. ``"cuda"`` means ``cuda:LOCAL_RANK`` under torchrun.
        resume: skip the batches whose outputs are complete from an earlier run into the same
            ``output_dir`` (which must have used the same settings). False recomputes everything.
        progress: a progress bar (images/s, ETA) on stderr, in process 0. None: only when stderr
            is a terminal.
        task: ``"classification"``, or ``"detection"``: ``model`` is a detector (torchvision,
            ultralytics, HuggingFace DETR; ``target_layers`` and ``reshape_transform`` from
            :func:`~pytorch_grad_cam.detection.layers.detector_target_layers`) and every box it
            predicts gets its own map (:mod:`pytorch_grad_cam.batch.detection`). It takes no
            ``targets``, ``html`` or ``aug_smooth``, and the methods of its ``DETECTION_METHODS``.
            Or ``"segmentation"``: ``model`` is a segmenter (its output holds ``(B, K, H, W)``
            class scores) and every class of an image's predicted mask covering ``min_area`` of it
            gets its own map (:mod:`pytorch_grad_cam.batch.segmentation`); the same refusals, and
            the methods of ``SEGMENTATION_METHODS``.
        box_threshold: detection: explain the boxes scoring above this.
        max_boxes: detection: at most this many boxes per image, the best.
        min_area: segmentation: explain the classes covering at least this share of the image's
            predicted mask, in [0, 1] (0: every class present).
        evaluate: True, or a mapping of :func:`~pytorch_grad_cam.batch.evaluate.evaluate`'s options
            (``annotations``, ``sanity``, ``steps``, ``html``, ...): score the methods instead of
            saving maps (``method`` may then be several, ``"gradcam,layercam"``); writes
            ``evaluation.json`` and ``report.html`` (unless ``{"html": False}``; ``run``'s own
            ``html`` is the CAM gallery's). Classification only, without overlays or smoothing.

    Returns:
        The summary, with counts over all processes (the same object in every process); with
        ``evaluate``, the :class:`~pytorch_grad_cam.batch.evaluate.EvaluationSummary`.

    Every record of ``manifest.jsonl`` has ``name`` (the path under the input folder, or the
    dataset index's name), ``image`` (the file's path, for a folder), ``status`` (``"ok"`` or
    ``"error"``) and ``method``. An ``"ok"`` record adds ``predicted`` (the top class),
    ``predicted_name``, ``probability`` (its softmax probability, 6 decimals), ``target`` (the class
    explained; None for methods without a target, such as EigenCAM), ``target_name``, ``cam_size``
    ``[height, width]``, ``cam``, ``overlay``, ``thumbnail``, ``overlay_thumbnail`` (paths relative to
    the output folder, or None), ``converted_from`` (the file's colour mode when it was not RGB) and,
    for a dataset, ``meta``. An ``"error"`` record has ``error``, the reason (the run goes on).
    A detection run's ``"ok"`` record has instead ``task`` (``"detection"``), ``boxes`` (per box:
    ``label``, ``label_name``, ``score``, ``box`` in the saved map's pixels, ``input_box`` in the
    model input's, ``cam``, ``overlay``), ``cam_size``, ``converted_from`` (and ``meta``); a
    segmentation run's, ``task`` (``"segmentation"``) and ``classes`` (per class, largest first:
    ``class``, ``class_name``, ``area``, its share of the image, 6 decimals, ``cam``, ``overlay``).

    Raises:
        ConfigError: (a ValueError) arguments that do not fit together, an ``output_dir`` made
            with other settings, in use by another run, or that cannot be made or written.
        OSError: a filesystem failure in the middle of the run (a full disk): no file is left
            half-written, and a rerun completes the batches that were not.
        ValueError: a count out of range (``batch_size``, ``num_workers``, ``per_page``).
        TypeError: a non-module model, an iterable-style dataset, a count that is not an int.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if evaluate is not False:
        return _evaluate(locals())
    cam_class, method_name = method_class(method)
    batch_size = positive_int(batch_size, "batch_size")
    num_workers = positive_int(num_workers, "num_workers", minimum=0)
    per_page = positive_int(per_page, "per_page")
    image_hw = pair(image_size, "image_size")
    cam_hw = pair(cam_size, "cam_size", allow_none=True)
    detection = detection_options(
        task,
        box_threshold,
        max_boxes,
        method_name=method_name,
        targets=targets,
        html=html,
        aug_smooth=aug_smooth,
    )
    segmentation = segmentation_options(
        task, min_area, method_name=method_name, targets=targets, html=html, aug_smooth=aug_smooth
    )
    task_options = detection or segmentation
    mean, std = normalisation(mean, std, detection=detection is not None)
    if len(mean) != len(std) or not all(s > 0 for s in std):
        raise ConfigError(f"mean and std must have one entry per channel, std > 0; got {mean!r}, {std!r}")
    if (
        targets is not None
        and not callable(targets)
        and (not isinstance(targets, int) or isinstance(targets, bool))
    ):
        raise ConfigError(
            f"targets must be None, an int class index or a callable meta -> int; got {targets!r}"
        )
    check_flags(
        save_overlay=save_overlay, html=html, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, resume=resume
    )
    output_dir = Path(output_dir)
    image_dir, dataset = input_source(dataset_or_dir, output_dir)
    settings = {
        "method": method_name,
        "input": "folder" if image_dir is not None else "dataset",
        "image_size": list(image_hw) if image_dir is not None else None,
        "mean": [float(m) for m in mean] if image_dir is not None else None,
        "std": [float(s) for s in std] if image_dir is not None else None,
        "cam_size": list(cam_hw) if cam_hw is not None else None,
        "targets": "callable" if callable(targets) else targets,
        "aug_smooth": aug_smooth,
        "eigen_smooth": eigen_smooth,
        **(task_options.settings() if task_options is not None else {}),
    }

    world = join_world()
    try:
        return _run(
            world,
            model,
            target_layers,
            cam_class,
            method_name,
            image_dir=image_dir,
            dataset=dataset,
            output_dir=output_dir,
            settings=settings,
            batch_size=batch_size,
            num_workers=num_workers,
            image_hw=image_hw,
            cam_hw=cam_hw,
            mean=mean,
            std=std,
            save_overlay=save_overlay,
            html=html,
            per_page=per_page,
            targets=targets,
            class_names=class_names,
            reshape_transform=reshape_transform,
            aug_smooth=aug_smooth,
            eigen_smooth=eigen_smooth,
            device=resolve_device(device, model, world),
            resume=resume,
            show_progress=show_progress(progress, world),
            task_options=task_options,
        )
    finally:
        world.close()


def _evaluate(arguments: dict[str, Any]) -> EvaluationSummary:
    """``run(..., evaluate=...)``: the evaluation, with ``run``'s arguments that it shares."""
    options = arguments["evaluate"]
    if not isinstance(options, (bool, Mapping)) or options is False:
        raise ConfigError(f"evaluate must be True, False or a mapping of options; got {options!r}")
    unused = {
        "task": "classification",
        "save_overlay": False,
        "aug_smooth": False,
        "eigen_smooth": False,
        "cam_size": None,
    }
    for name, default in unused.items():
        if arguments[name] != default:
            raise ConfigError(f"evaluate does not take {name}={arguments[name]!r}")
    shared = ("batch_size", "num_workers", "image_size", "mean", "std", "targets", "class_names")
    shared += ("reshape_transform", "device", "resume", "progress")  # the report: evaluate's html
    return evaluate_dataset(
        arguments["model"],
        arguments["target_layers"],
        arguments["dataset_or_dir"],
        arguments["method"],
        output_dir=arguments["output_dir"],
        **{name: arguments[name] for name in shared},
        **(options if isinstance(options, Mapping) else {}),
    )


def _run(
    world: World,
    model: nn.Module,
    target_layers: Any,
    cam_class: type[BaseCAM],
    method_name: str,
    *,
    image_dir: Path | None,
    dataset: Any,
    output_dir: Path,
    settings: dict,
    batch_size: int,
    num_workers: int,
    image_hw: tuple[int, int],
    cam_hw: tuple[int, int] | None,
    mean: Sequence[float],
    std: Sequence[float],
    save_overlay: bool,
    html: bool,
    per_page: int,
    targets: int | Callable[[Any], int] | None,
    class_names: Sequence[str] | None,
    reshape_transform: Callable[[Any], torch.Tensor] | None,
    aug_smooth: bool,
    eigen_smooth: bool,
    device: torch.device,
    resume: bool,
    show_progress: bool,
    task_options: DetectionOptions | SegmentationOptions | None,
) -> BatchSummary:
    started = time.perf_counter()
    names, pending, lock = make_plan(
        world,
        image_dir=image_dir,
        dataset=dataset,
        output_dir=output_dir,
        settings=settings,
        batch_size=batch_size,
        method_name=method_name,
        overlay=save_overlay,
        thumbnail=html,
        resume=resume,
    )
    try:
        if not names and world.rank == 0:
            warnings.warn(
                f"no images in {image_dir if image_dir is not None else 'the dataset'}", stacklevel=3
            )
        mine = pending[world.rank :: world.size]
        batches = [list(range(b * batch_size, min(len(names), (b + 1) * batch_size))) for b in mine]
        if image_dir is not None:
            samples: Dataset = FolderSamples(
                [str(image_dir / name) for name in names],
                image_size=image_hw,
                cam_size=cam_hw,
                mean=mean,
                std=std,
                overlay=save_overlay,
                thumbnail=html,
            )
        else:
            samples = DatasetSamples(dataset, cam_size=cam_hw, overlay=save_overlay, thumbnail=html)
        loader = DataLoader(
            samples,
            batch_sampler=batches,
            num_workers=num_workers,
            collate_fn=as_list,
        )
        writer = Writer(
            output_dir,
            names,
            image_dir=image_dir,
            method_name=method_name,
            save_overlay=save_overlay,
            html=html,
            class_names=class_names,
            is_dataset=dataset is not None,
        )
        cam = cam_class(model, target_layers, reshape_transform=reshape_transform, device=device)
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(len(b) for b in batches), unit="img", desc=method_name, dynamic_ncols=True)
        shard = output_dir / SHARD_DIR / f"rank-{world.rank:05d}.jsonl"
        try:
            with append_only(shard) as shard_file:
                if task_options is None:
                    work = timed_batches(loader, cam, targets, aug_smooth, eigen_smooth, names, image_dir)
                else:  # one map per box or class
                    detection = isinstance(task_options, DetectionOptions)
                    work = (detection_batches if detection else segmentation_batches)(
                        loader, cam, task_options, device=device, chunk=batch_size, eigen_smooth=eigen_smooth
                    )
                counts = record_batches(work, writer, shard_file, bar)
        finally:
            if bar is not None:
                bar.close()
        return finish_run(
            world,
            counts,
            time.perf_counter() - started,
            output_dir=output_dir,
            names=names,
            pending=pending,
            batch_size=batch_size,
            gallery_title=f"{method_name} CAMs" if html else None,
            per_page=per_page,
            task_options=task_options,
        )
    finally:
        if lock is not None:  # process 0's: the run is over, written or failed
            lock.release()
