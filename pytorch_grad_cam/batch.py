"""CAMs for whole datasets: a resumable batch runner that scales out with ``torchrun``.

One process::

    python -m pytorch_grad_cam.batch --image-dir photos/ --method gradcam --output-dir cams/

Several processes (GPUs, or CPU processes), on one node or many (torchrun's rendezvous flags)::

    torchrun --nproc-per-node 4 -m pytorch_grad_cam.batch --image-dir photos/ --output-dir cams/

From Python: :func:`run`. What it writes into ``output_dir``:

- ``<name>.npy`` for every image ``<name>`` (its path under the image folder, so the input tree
  is mirrored): the CAM, float16 in [0, 1], at the image's own size or ``cam_size``;
- ``<name>.overlay.jpg`` with ``save_overlay``: the CAM over the image;
- ``manifest.jsonl``: one JSON object a line, per image in input order (see :func:`run`);
- ``index.html``, ``index-2.html``, ... with ``html``, and their thumbnails under ``thumbnails/``;
- ``run.json``: the settings, so that a re-run with other settings is refused instead of mixed in.

**Work unit and determinism.** The images are cut, in input order, into batches of
``batch_size``. A batch is the unit of work: it always holds the same images, whichever process
computes it, and it is skipped on a re-run only when every one of its images is complete. With
several processes, process ``r`` of ``W`` computes the pending batches ``r, r + W, r + 2W, ...``
(a disjoint, deterministic split without padding), so every CAM is computed from exactly the same
batch as in a one-process run and the files are identical (on the CPU with the same number of
threads per process; on GPUs up to cuDNN's own nondeterminism).

**Resuming.** Every file is written under a temporary name and renamed when complete; the
manifest record of a batch is appended after all its files exist. A run killed at any point and
started again with the same arguments recomputes only the batches that had not completed, and
ends with one record per image.

**Processes.** Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) a
gloo process group coordinates the processes (it carries only the work list and the counts, so it
works alike with GPUs and CPUs); each process uses ``cuda:LOCAL_RANK`` when CUDA is available, else
the CPU, and appends to its own manifest shard. Process 0 merges the shards into
``manifest.jsonl`` after all have finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam import models
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch_html import write_gallery
from pytorch_grad_cam.batch_io import (
    BadImage,
    find_images,
    load_rgb,
    read_jsonl,
    resize_rgb,
    save_jpeg,
    save_npy,
    write_text,
)
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.models import DEFAULT_MODEL
from pytorch_grad_cam.registry import METHODS, get_method
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD, show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.outputs import classifier_logits

__all__ = ["BatchSummary", "ConfigError", "load_model", "main", "run"]

MANIFEST_NAME = "manifest.jsonl"
SETTINGS_NAME = "run.json"
#: Where each process appends its manifest records until process 0 merges them.
SHARD_DIR = ".manifest-shards"
THUMBNAIL_DIR = "thumbnails"
#: The longer side of a gallery thumbnail, in pixels.
THUMBNAIL_SIZE = 160
#: How long a process waits for the others at the end (the slowest process's remaining work).
_GROUP_TIMEOUT = datetime.timedelta(hours=24)


class ConfigError(ValueError):
    """Arguments that do not fit together or do not fit the output folder's earlier run."""


@dataclasses.dataclass
class BatchSummary:
    """What a :func:`run` did (counts over all processes).

    Attributes:
        total: images in the input.
        written: CAMs computed and written by this run.
        failed: bad files met by this run (recorded in the manifest with the reason).
        skipped: images of batches that were already complete (from an earlier run).
        seconds: wall time of the run (the slowest process).
        data_seconds: time the processes waited for the DataLoader (summed over processes).
        cam_seconds: time in the model and the CAM computation (summed).
        write_seconds: time resizing, colouring and writing files (summed).
        manifest: the manifest's path.
        pages: the gallery pages (with ``html``).
        world_size: the number of processes.
        rank: this process's rank (0 without torchrun).
    """

    total: int
    written: int
    failed: int
    skipped: int
    seconds: float
    data_seconds: float
    cam_seconds: float
    write_seconds: float
    manifest: Path
    pages: list[Path]
    world_size: int
    rank: int = 0

    @property
    def images_per_second(self) -> float:
        """Images processed (written or failed) by this run per second of wall time."""
        return (self.written + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the command prints."""
        busy = self.data_seconds + self.cam_seconds + self.write_seconds
        shares = ""
        if busy > 0:
            shares = (
                f" (waiting for data {self.data_seconds / busy:.0%}, CAMs {self.cam_seconds / busy:.0%}, "
                f"writing {self.write_seconds / busy:.0%})"
            )
        processes = f" on {self.world_size} processes" if self.world_size > 1 else ""
        return (
            f"{self.total} images: {self.written} CAMs written, {self.skipped} already done, "
            f"{self.failed} bad files; {self.seconds:.1f} s{processes}, "
            f"{self.images_per_second:.1f} images/s{shares}; manifest: {self.manifest}"
        )


# -- samples: what a DataLoader worker hands the main process -------------------------------------


@dataclasses.dataclass
class _Sample:
    """One image, prepared by a worker. ``error`` is set (and ``tensor`` None) for a bad one."""

    index: int
    tensor: torch.Tensor | None = None
    error: str | None = None
    meta: Any = None
    cam_size: tuple[int, int] = (0, 0)
    overlay_rgb: np.ndarray | None = None
    thumbnail_rgb: np.ndarray | None = None
    converted_from: str | None = None


def _thumbnail_size(size: tuple[int, int]) -> tuple[int, int]:
    height, width = size
    scale = THUMBNAIL_SIZE / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class _FolderSamples(Dataset):
    """Image files -> normalised ``(3, H, W)`` tensors (bad files -> an error sample, never raises)."""

    def __init__(
        self,
        files: Sequence[str],
        *,
        image_size: tuple[int, int],
        cam_size: tuple[int, int] | None,
        mean: Sequence[float],
        std: Sequence[float],
        overlay: bool,
        thumbnail: bool,
    ) -> None:
        self.files = list(files)
        self.image_size = image_size
        self.cam_size = cam_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.overlay = overlay
        self.thumbnail = thumbnail
        # a JPEG may be decoded at a reduced scale when no full-size output is needed
        needed = [*image_size, *(cam_size or ())]
        self.draft_size = max(needed) if cam_size is not None or not overlay else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> _Sample:
        try:
            image, original_size, converted_from = load_rgb(self.files[index], draft_size=self.draft_size)
            cam_size = self.cam_size or original_size
            pixels = resize_rgb(image, self.image_size).astype(np.float32) / 255.0
            tensor = torch.from_numpy((pixels - self.mean) / self.std).permute(2, 0, 1).contiguous()
            return _Sample(
                index,
                tensor,
                cam_size=cam_size,
                overlay_rgb=resize_rgb(image, cam_size) if self.overlay else None,
                thumbnail_rgb=resize_rgb(image, _thumbnail_size(cam_size)) if self.thumbnail else None,
                converted_from=converted_from,
            )
        except BadImage as error:
            return _Sample(index, error=str(error))
        except Exception as error:  # a worker must survive any one file
            return _Sample(index, error=f"{type(error).__name__}: {error}")


def _tensor_as_rgb(tensor: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A ``(C, H, W)`` input min-max scaled to an ``(H', W', 3)`` uint8 picture (1 or 3 channels)."""
    picture = tensor.detach().float()
    if picture.shape[0] == 1:
        picture = picture.expand(3, -1, -1)
    picture = picture[:3]
    picture = (picture - picture.min()) / (picture.max() - picture.min() + 1e-7)
    picture = torch.nn.functional.interpolate(
        picture.unsqueeze(0), size=tuple(size), mode="bilinear", align_corners=False
    )[0]
    return (picture.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


class _DatasetSamples(Dataset):
    """A user's map-style dataset of ``(tensor, meta)`` -> samples (an item that raises -> error)."""

    def __init__(
        self, dataset: Any, *, cam_size: tuple[int, int] | None, overlay: bool, thumbnail: bool
    ) -> None:
        self.dataset = dataset
        self.cam_size = cam_size
        self.overlay = overlay
        self.thumbnail = thumbnail

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> _Sample:
        try:
            item = self.dataset[index]
            tensor, meta = (
                (item[0], item[1]) if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
            )
            if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3 or not tensor.is_floating_point():
                shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                return _Sample(index, error=f"the dataset item is not a floating (C, H, W) tensor: {shape}")
            cam_size = self.cam_size or (int(tensor.shape[1]), int(tensor.shape[2]))
            return _Sample(
                index,
                tensor,
                meta=meta,
                cam_size=cam_size,
                overlay_rgb=_tensor_as_rgb(tensor, cam_size) if self.overlay else None,
                thumbnail_rgb=_tensor_as_rgb(tensor, _thumbnail_size(cam_size)) if self.thumbnail else None,
            )
        except Exception as error:  # a worker must survive any one item
            return _Sample(index, error=f"{type(error).__name__}: {error}")


def _as_list(samples: list[_Sample]) -> list[_Sample]:
    return samples


# -- processes ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _World:
    """This process's place among the processes of a run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    group: Any = None
    owns_default_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier(group=self.group)

    def broadcast(self, value: Any) -> Any:
        """Process 0's ``value``, on every process."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def reduce(self, values: list[float], op: str) -> list[float]:
        """Element-wise sum (``op="sum"``) or max over the processes."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        reduce_op = torch.distributed.ReduceOp.SUM if op == "sum" else torch.distributed.ReduceOp.MAX
        torch.distributed.all_reduce(tensor, op=reduce_op, group=self.group)
        return tensor.tolist()

    def close(self) -> None:
        if self.owns_default_group:
            torch.distributed.destroy_process_group()
        elif self.group is not None:
            torch.distributed.destroy_process_group(self.group)


def _join_world() -> _World:
    """Join the run's processes: torchrun's environment, or an already initialised process group."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() == 1:
            return _World()
        group = dist.new_group(backend="gloo", timeout=_GROUP_TIMEOUT)
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return _World(dist.get_rank(), dist.get_world_size(), local_rank, group)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _World()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    dist.init_process_group(backend="gloo", timeout=_GROUP_TIMEOUT)
    return _World(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", "0")), None, True)


def _resolve_device(device: torch.device | str | None, model: nn.Module, world: _World) -> torch.device:
    if device is None:
        if world.distributed and torch.cuda.is_available():
            return torch.device("cuda", world.local_rank)
        parameter = next(iter(model.parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank if world.distributed else torch.cuda.current_device())
    return device


# -- the output folder ----------------------------------------------------------------------------


def _output_paths(name: str, *, overlay: bool, thumbnail: bool) -> dict[str, str | None]:
    """The files of image ``name``, relative to the output folder."""
    return {
        "cam": f"{name}.npy",
        "overlay": f"{name}.overlay.jpg" if overlay else None,
        "thumbnail": f"{THUMBNAIL_DIR}/{name}.jpg" if thumbnail else None,
        "overlay_thumbnail": f"{THUMBNAIL_DIR}/{name}.overlay.jpg" if thumbnail else None,
    }


def _merge_manifest(output_dir: Path, names: Sequence[str]) -> list[dict]:
    """Merge ``manifest.jsonl`` and the shards (a shard's record wins) into ``manifest.jsonl``.

    The result holds the records of ``names`` only, in that order, one each; the shards are
    removed. Returns the records.
    """
    manifest = output_dir / MANIFEST_NAME
    shards = sorted((output_dir / SHARD_DIR).glob("*.jsonl"))
    latest: dict[str, tuple[dict, str]] = {}
    for path in [manifest, *shards]:
        for record, line in read_jsonl(path):
            latest[str(record.get("name"))] = (record, line)
    kept = [latest[name] for name in names if name in latest]
    write_text(manifest, "".join(line + "\n" for _, line in kept))
    for shard in shards:
        shard.unlink()
    if (output_dir / SHARD_DIR).is_dir() and not any((output_dir / SHARD_DIR).iterdir()):
        (output_dir / SHARD_DIR).rmdir()
    return [record for record, _ in kept]


def _check_settings(output_dir: Path, settings: dict, resume: bool) -> None:
    path = output_dir / SETTINGS_NAME
    if resume and path.exists():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = None
        if isinstance(earlier, dict) and earlier != settings:
            changed = ", ".join(
                f"{key}={earlier.get(key)!r} (now {settings.get(key)!r})"
                for key in settings
                if earlier.get(key) != settings.get(key)
            )
            raise ConfigError(
                f"output_dir {output_dir} holds a run made with other settings: {changed}; use another "
                "output_dir, or resume=False (--no-resume) to recompute everything"
            )
    write_text(path, json.dumps(settings, indent=1) + "\n")


def _complete(record: dict | None, output_dir: Path, paths: dict[str, str | None], method: str) -> bool:
    """Whether an image needs no work: a bad file already recorded, or every wanted file present."""
    if record is None or record.get("method") != method:
        return False
    if record.get("status") != "ok":
        return True
    return all(
        record.get(key) == path and (output_dir / path).is_file() for key, path in paths.items() if path
    )


# -- the run --------------------------------------------------------------------------------------


def _pair(value: Any, name: str, *, allow_none: bool = False) -> tuple[int, int] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    expected = "a positive int or an (height, width) pair" + (", or None" if allow_none else "")
    raise ConfigError(f"{name} must be {expected}; got {value!r}")


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _method_class(method: str | type[BaseCAM]) -> tuple[type[BaseCAM], str]:
    if isinstance(method, str):
        try:
            return get_method(method), method.lower()
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if isinstance(method, type) and issubclass(method, BaseCAM):
        known = [info.name for info in METHODS.values() if info.cls is method]
        return method, known[0] if known else method.__name__
    raise ConfigError(
        f"method must be a registry name ({', '.join(METHODS)}) or a BaseCAM subclass; got {method!r}"
    )


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _show_progress(progress: bool | None, world: _World) -> bool:
    if world.rank != 0:
        return False
    if progress is None:
        return sys.stderr is not None and sys.stderr.isatty()
    return bool(progress)


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
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
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
) -> BatchSummary:
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
        batch_size: images per batch (the unit of work; see the module docstring).
        num_workers: DataLoader worker processes decoding and resizing (0: in this process).
        image_size: the model's input size, ``int`` (square) or ``(height, width)`` (folders only).
        cam_size: the saved CAMs' size, ``int`` (square) or ``(height, width)``; None: each image's
            own size (a folder image's file size, a dataset tensor's size).
        mean: the per-channel normalisation mean (folders only).
        std: the per-channel normalisation std (folders only).
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

    Returns:
        The summary, with counts over all processes (the same object in every process).

    Every record of ``manifest.jsonl`` has ``name`` (the path under the input folder, or the
    dataset index's name), ``image`` (the file's path, for a folder), ``status`` (``"ok"`` or
    ``"error"``) and ``method``. An ``"ok"`` record adds ``predicted`` (the top class),
    ``predicted_name``, ``probability`` (its softmax probability, 6 decimals), ``target`` (the class
    explained; None for methods without a target, such as EigenCAM), ``target_name``, ``cam_size``
    ``[height, width]``, ``cam``, ``overlay``, ``thumbnail``, ``overlay_thumbnail`` (paths relative to
    the output folder, or None), ``converted_from`` (the file's colour mode when it was not RGB) and,
    for a dataset, ``meta``. An ``"error"`` record has ``error``, the reason (the run goes on).

    Raises:
        ConfigError: (a ValueError) bad arguments, or an ``output_dir`` made with other settings.
        TypeError: a non-module model or an iterable-style dataset.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    cam_class, method_name = _method_class(method)
    batch_size = _positive_int(batch_size, "batch_size")
    num_workers = _positive_int(num_workers, "num_workers", minimum=0)
    per_page = _positive_int(per_page, "per_page")
    image_hw = _pair(image_size, "image_size")
    cam_hw = _pair(cam_size, "cam_size", allow_none=True)
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
    for flag_name, flag in (
        ("save_overlay", save_overlay),
        ("html", html),
        ("aug_smooth", aug_smooth),
        ("eigen_smooth", eigen_smooth),
        ("resume", resume),
    ):
        if not isinstance(flag, bool):
            raise ConfigError(f"{flag_name} must be True or False; got {flag!r}")
    output_dir = Path(output_dir)
    if isinstance(dataset_or_dir, (str, os.PathLike)):
        image_dir = Path(dataset_or_dir)
        if not image_dir.is_dir():
            raise ConfigError(f"dataset_or_dir: {image_dir} is not a folder")
        if image_dir.resolve() == output_dir.resolve():
            raise ConfigError("output_dir must not be the image folder itself; use a separate folder")
        dataset = None
    elif isinstance(dataset_or_dir, IterableDataset):
        raise TypeError(
            "dataset_or_dir must be a map-style dataset (len and [index]); got an IterableDataset"
        )
    elif isinstance(dataset_or_dir, (Dataset, Sequence)):
        image_dir, dataset = None, dataset_or_dir
    else:
        raise TypeError(
            "dataset_or_dir must be a folder path or a map-style torch Dataset; "
            f"got {type(dataset_or_dir).__name__}"
        )
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
    }

    world = _join_world()
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
            device=_resolve_device(device, model, world),
            resume=resume,
            show_progress=_show_progress(progress, world),
        )
    finally:
        world.close()


def _plan(
    world: _World,
    *,
    image_dir: Path | None,
    dataset: Any,
    output_dir: Path,
    settings: dict,
    batch_size: int,
    method_name: str,
    overlay: bool,
    thumbnail: bool,
    resume: bool,
) -> tuple[list[str], list[int]]:
    """Process 0: list the images, prepare the folder, find the pending batches. Every process gets them."""
    plan: tuple[str, Any, Any] = ("ok", None, None)
    if world.rank == 0:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            if image_dir is not None:
                names = find_images(image_dir, exclude=output_dir)
            else:
                width = len(str(max(len(dataset) - 1, 0)))
                names = [f"{index:0{width}d}" for index in range(len(dataset))]
            _check_settings(output_dir, settings, resume)
            if not resume:
                for stale in [output_dir / MANIFEST_NAME, *(output_dir / SHARD_DIR).glob("*.jsonl")]:
                    if stale.exists():
                        stale.unlink()
            records = {record["name"]: record for record in _merge_manifest(output_dir, names)}
            batches = math.ceil(len(names) / batch_size)
            pending = []
            for batch in range(batches):
                members = names[batch * batch_size : (batch + 1) * batch_size]
                if not all(
                    _complete(
                        records.get(name),
                        output_dir,
                        _output_paths(name, overlay=overlay, thumbnail=thumbnail),
                        method_name,
                    )
                    for name in members
                ):
                    pending.append(batch)
            (output_dir / SHARD_DIR).mkdir(exist_ok=True)
            plan = ("ok", names, pending)
        except ConfigError as error:
            plan = ("error", str(error), None)
    plan = world.broadcast(plan)
    if plan[0] == "error":
        raise ConfigError(plan[1])
    return plan[1], plan[2]


def _run(
    world: _World,
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
) -> BatchSummary:
    started = time.perf_counter()
    names, pending = _plan(
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
    if not names and world.rank == 0:
        warnings.warn(f"no images in {image_dir if image_dir is not None else 'the dataset'}", stacklevel=3)
    mine = pending[world.rank :: world.size]
    batches = [list(range(b * batch_size, min(len(names), (b + 1) * batch_size))) for b in mine]
    if image_dir is not None:
        samples: Dataset = _FolderSamples(
            [str(image_dir / name) for name in names],
            image_size=image_hw,
            cam_size=cam_hw,
            mean=mean,
            std=std,
            overlay=save_overlay,
            thumbnail=html,
        )
    else:
        samples = _DatasetSamples(dataset, cam_size=cam_hw, overlay=save_overlay, thumbnail=html)
    loader = DataLoader(
        samples,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_as_list,
    )
    writer = _Writer(
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
    counts = {"written": 0, "failed": 0, "data": 0.0, "cam": 0.0, "write": 0.0}
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(b) for b in batches), unit="img", desc=method_name, dynamic_ncols=True)
    shard = output_dir / SHARD_DIR / f"rank-{world.rank:05d}.jsonl"
    try:
        with open(shard, "a", encoding="utf-8") as shard_file:
            for batch, cam_seconds, data_seconds in _timed_batches(
                loader, cam, targets, aug_smooth, eigen_smooth, names, image_dir
            ):
                tick = time.perf_counter()
                lines = [json.dumps(writer.record(sample, result)) + "\n" for sample, result in batch]
                shard_file.write("".join(lines))
                shard_file.flush()
                counts["write"] += time.perf_counter() - tick
                counts["cam"] += cam_seconds
                counts["data"] += data_seconds
                for sample, _ in batch:
                    counts["failed" if sample.error is not None else "written"] += 1
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started
    written, failed, data_s, cam_s, write_s = world.reduce(
        [counts["written"], counts["failed"], counts["data"], counts["cam"], counts["write"]], "sum"
    )
    (elapsed,) = world.reduce([elapsed], "max")
    pages: list[Path] = []
    if world.rank == 0:
        records = _merge_manifest(output_dir, names)
        if html:
            pages = write_gallery(output_dir, records, per_page=per_page, title=f"{method_name} CAMs")
    pages = world.broadcast(pages)
    computed = int(written) + int(failed)
    return BatchSummary(
        total=len(names),
        written=int(written),
        failed=int(failed),
        skipped=len(names) - computed,
        seconds=elapsed,
        data_seconds=data_s,
        cam_seconds=cam_s,
        write_seconds=write_s,
        manifest=output_dir / MANIFEST_NAME,
        pages=pages,
        world_size=world.size,
        rank=world.rank,
    )


@dataclasses.dataclass
class _Result:
    """A computed CAM (at the model's input size) and the model's top prediction."""

    cam: np.ndarray
    target: int | None
    predicted: int | None
    probability: float | None


def _timed_batches(
    loader: DataLoader,
    cam: BaseCAM,
    targets: int | Callable[[Any], int] | None,
    aug_smooth: bool,
    eigen_smooth: bool,
    names: Sequence[str],
    image_dir: Path | None,
) -> Iterator[tuple[list[tuple[_Sample, _Result | None]], float, float]]:
    """Per batch: the samples with their results (None for a bad one), CAM seconds, data-wait seconds."""
    iterator = iter(loader)
    while True:
        tick = time.perf_counter()
        try:
            samples = next(iterator)
        except StopIteration:
            return
        data_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        results: dict[int, _Result] = {}
        groups: dict[tuple[int, ...], list[_Sample]] = {}
        for sample in samples:
            if sample.error is None:
                groups.setdefault(tuple(sample.tensor.shape), []).append(sample)
        for group in groups.values():
            batch = torch.stack([sample.tensor for sample in group])
            wanted = None
            if targets is not None:
                wanted = []
                for sample in group:
                    meta = sample.meta if image_dir is None else names[sample.index]
                    wanted.append(int(targets(meta)) if callable(targets) else targets)
            maps = cam(
                batch,
                targets=None if wanted is None else [ClassifierOutputTarget(k) for k in wanted],
                aug_smooth=aug_smooth,
                eigen_smooth=eigen_smooth,
            )
            try:
                logits = classifier_logits(cam.outputs).float()
            except ValueError:
                logits = None
            top_p, top_k = (None, None)
            if logits is not None:
                top_p, top_k = torch.softmax(logits, dim=-1).max(dim=-1)
            for row, sample in enumerate(group):
                predicted = int(top_k[row]) if top_k is not None else None
                target = None
                if cam.uses_targets:
                    target = wanted[row] if wanted is not None else predicted
                probability = round(float(top_p[row]), 6) if top_p is not None else None
                results[sample.index] = _Result(maps[row], target, predicted, probability)
        cam_seconds = time.perf_counter() - tick
        yield [(sample, results.get(sample.index)) for sample in samples], cam_seconds, data_seconds


class _Writer:
    """Writes one image's files and makes its manifest record."""

    def __init__(
        self,
        output_dir: Path,
        names: Sequence[str],
        *,
        image_dir: Path | None,
        method_name: str,
        save_overlay: bool,
        html: bool,
        class_names: Sequence[str] | None,
        is_dataset: bool,
    ) -> None:
        self.output_dir = output_dir
        self.names = names
        self.image_dir = image_dir.resolve() if image_dir is not None else None
        self.method_name = method_name
        self.save_overlay = save_overlay
        self.html = html
        self.class_names = list(class_names) if class_names is not None else None
        self.is_dataset = is_dataset
        self._folders: set[Path] = set()

    def _class_name(self, index: int | None) -> str | None:
        if index is None or self.class_names is None or not 0 <= index < len(self.class_names):
            return None
        return str(self.class_names[index])

    def _path(self, relative: str) -> Path:
        path = self.output_dir / relative
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        return path

    def record(self, sample: _Sample, result: _Result | None) -> dict:
        name = self.names[sample.index]
        record: dict[str, Any] = {
            "name": name,
            "image": str(self.image_dir / name) if self.image_dir is not None else None,
        }
        if sample.error is not None or result is None:
            record.update(status="error", method=self.method_name, error=sample.error or "no CAM computed")
            if self.is_dataset:
                record["meta"] = _json_safe(sample.meta)
            return record
        paths = _output_paths(name, overlay=self.save_overlay, thumbnail=self.html)
        cam = CF.resize_cams(torch.from_numpy(result.cam).unsqueeze(0), sample.cam_size)[0].numpy()
        save_npy(self._path(paths["cam"]), cam.astype(np.float16))
        if self.save_overlay:
            overlay = show_cam_on_image(sample.overlay_rgb.astype(np.float32) / 255.0, cam, use_rgb=True)
            save_jpeg(self._path(paths["overlay"]), overlay)
        if self.html:
            thumbnail = sample.thumbnail_rgb
            small = CF.resize_cams(torch.from_numpy(result.cam).unsqueeze(0), thumbnail.shape[:2])[0].numpy()
            save_jpeg(self._path(paths["thumbnail"]), thumbnail)
            save_jpeg(
                self._path(paths["overlay_thumbnail"]),
                show_cam_on_image(thumbnail.astype(np.float32) / 255.0, small, use_rgb=True),
            )
        record.update(
            status="ok",
            method=self.method_name,
            predicted=result.predicted,
            predicted_name=self._class_name(result.predicted),
            probability=result.probability,
            target=result.target,
            target_name=self._class_name(result.target),
            cam_size=list(sample.cam_size),
            **paths,
            converted_from=sample.converted_from,
        )
        if self.is_dataset:
            record["meta"] = _json_safe(sample.meta)
        return record


# -- models for the command line ---------------------------------------------------------------------


def load_model(
    name: str, weights: str | None = None
) -> tuple[nn.Module, list[nn.Module] | None, list[str] | None]:
    """A ``--model`` in eval mode, its default target layers (None: unknown) and class names (or None).

    The models are those of ``cam.py`` (:func:`pytorch_grad_cam.models.load_model`): ``efficientnet_lite0``
    (offline), a torchvision classifier, or a factory ``package.module:callable`` /
    ``path/to/file.py:callable``.

    Raises:
        UsageError: an unknown or unloadable model.
    """
    loaded = models.load_model(name, weights)
    layers = None
    if loaded.target_layer is not None:
        layers = [models.find_layer(loaded.model, loaded.target_layer)[0]]
    return loaded.model, layers, loaded.categories


# -- the command line -------------------------------------------------------------------------------


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
        description="Save the CAM of every image of a folder tree (resumable; scales out with torchrun).",
    )
    parser.add_argument("--image-dir", required=True, help="folder of images, searched recursively")
    parser.add_argument("--output-dir", required=True, help="where the CAMs and manifest.jsonl go")
    parser.add_argument("--method", default="gradcam", help=f"one of: {', '.join(METHODS)} (default gradcam)")
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
        help="dotted path of a target layer (repeat for several); default: the model's usual last block",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--image-size", type=_size_argument, default=224, help="model input size: N or HxW")
    parser.add_argument(
        "--cam-size", type=_size_argument, help="saved CAM size: N or HxW (default: the image's)"
    )
    parser.add_argument("--save-overlay", action="store_true", help="also write <image>.overlay.jpg")
    parser.add_argument("--html", action="store_true", help="also write the index.html gallery")
    parser.add_argument("--per-page", type=int, default=100, help="gallery images per page")
    parser.add_argument("--category", type=int, help="explain this class index in every image (default: top)")
    parser.add_argument("--aug-smooth", action="store_true")
    parser.add_argument("--eigen-smooth", action="store_true")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda:LOCAL_RANK when available)")
    parser.add_argument("--no-resume", action="store_true", help="recompute images whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """The command line: ``python -m pytorch_grad_cam.batch --image-dir DIR --output-dir OUT ...``.

    Returns:
        0, or 2 after a usage error (one line on stderr). Bad image files do not fail the run:
        they are listed in the manifest.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        if not Path(args.image_dir).is_dir():
            raise UsageError(f"--image-dir {args.image_dir}: no such folder")
        loaded = models.load_model(args.model, args.weights)
        model, class_names = loaded.model, loaded.categories
        paths = args.target_layer or ([loaded.target_layer] if loaded.target_layer else [])
        layers = [models.find_layer(model, path)[0] for path in paths]
        if not layers:
            raise UsageError(f"--model {args.model}: no default target layer; pass --target-layer PATH")
        if args.device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            try:
                device = torch.device(args.device)
            except RuntimeError:
                raise UsageError(f"--device {args.device}: not a device (cpu, cuda, cuda:1, ...)") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise UsageError(f"--device {args.device}: CUDA is not available")
        summary = run(
            model,
            layers,
            args.image_dir,
            args.method,
            output_dir=args.output_dir,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            image_size=args.image_size,
            cam_size=args.cam_size,
            mean=loaded.mean,
            std=loaded.std,
            save_overlay=args.save_overlay,
            html=args.html,
            per_page=args.per_page,
            targets=args.category,
            class_names=class_names,
            reshape_transform=loaded.reshape_transform,
            aug_smooth=args.aug_smooth,
            eigen_smooth=args.eigen_smooth,
            device=device,
            resume=not args.no_resume,
            progress=False if args.no_progress else None,
        )
    except (UsageError, ConfigError) as error:
        sys.stderr.write(f"{parser.prog}: error: {error}\n")
        return 2
    if summary.rank == 0:
        sys.stdout.write(summary.line() + "\n")
    return 0


if __name__ == "__main__":
    from pytorch_grad_cam.batch import main as _main  # the importable module, not __main__ (pickling)

    sys.exit(_main())
