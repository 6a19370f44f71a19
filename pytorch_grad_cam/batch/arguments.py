"""The dataset runner's argument checks: sizes, the method, the normalisation, the progress bar."""

from __future__ import annotations

import sys
from typing import Any, Sequence

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
