"""The dataset runner's argument checks: sizes, the method, the flags, the input, the normalisation,
the progress bar."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset, IterableDataset

from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.world import World
from pytorch_grad_cam.errors import ConfigError
from pytorch_grad_cam.registry import METHODS, get_method
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD


def pair(value: Any, name: str, *, allow_none: bool = False) -> tuple[int, int] | None:
    """An ``int`` (square) or ``(height, width)`` size as a pair (None when allowed)."""
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


def method_class(method: str | type[BaseCAM]) -> tuple[type[BaseCAM], str]:
    """A registry name or a BaseCAM subclass as the class and the name the outputs record."""
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


def show_progress(progress: bool | None, world: World) -> bool:
    """Whether this process shows the progress bar (process 0; by default on a terminal only)."""
    if world.rank != 0:
        return False
    if progress is None:
        return sys.stderr is not None and sys.stderr.isatty()
    return bool(progress)


def normalisation(
    mean: Sequence[float] | None, std: Sequence[float] | None, *, detection: bool
) -> tuple[Sequence[float], Sequence[float]]:
    """``run``'s mean and std; None: ImageNet's for a classifier, none (0 and 1) for a detector
    (torchvision detectors take [0, 1] RGB and normalise inside)."""
    plain = detection and mean is None and std is None
    if mean is None:
        mean = (0.0, 0.0, 0.0) if plain else IMAGENET_MEAN
    if std is None:
        std = (1.0, 1.0, 1.0) if plain else IMAGENET_STD
    return mean, std


def check_flags(**flags: Any) -> None:
    """Each keyword argument must be True or False (else ConfigError naming it)."""
    for flag_name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ConfigError(f"{flag_name} must be True or False; got {flag!r}")


def input_source(dataset_or_dir: Any, output_dir: Path) -> tuple[Path | None, Any]:
    """``run``'s ``dataset_or_dir`` as ``(image folder, None)`` or ``(None, dataset)``.

    Raises:
        ConfigError: a path that is not a folder, or the output folder itself.
        TypeError: an iterable-style dataset, or neither a path nor a map-style dataset.
    """
    if isinstance(dataset_or_dir, (str, os.PathLike)):
        image_dir = Path(dataset_or_dir)
        if not image_dir.is_dir():
            raise ConfigError(f"dataset_or_dir: {image_dir} is not a folder")
        if image_dir.resolve() == output_dir.resolve():
            raise ConfigError("output_dir must not be the image folder itself; use a separate folder")
        return image_dir, None
    if isinstance(dataset_or_dir, IterableDataset):
        raise TypeError(
            "dataset_or_dir must be a map-style dataset (len and [index]); got an IterableDataset"
        )
    if isinstance(dataset_or_dir, (Dataset, Sequence)):
        return None, dataset_or_dir
    raise TypeError(
        "dataset_or_dir must be a folder path or a map-style torch Dataset; "
        f"got {type(dataset_or_dir).__name__}"
    )
