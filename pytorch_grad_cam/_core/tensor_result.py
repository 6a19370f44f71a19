"""A CAM's maps as a torch tensor on its device, for the wrappers that go on computing in torch.

A :class:`~pytorch_grad_cam.base_cam.BaseCAM` call returns numpy. SESS and RefineCAM combine the
maps of many calls; :func:`cam_maps` makes one call return its maps as a float32 tensor where it
computed them (the model's device), so the wrappers convert to numpy once, at their own result.
The request holds for that call only (a context variable, so other threads are not affected), and
CAM calls made inside it return numpy as usual.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

import numpy as np
import torch

_TENSOR_RESULT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytorch_grad_cam_tensor_result", default=False
)


def cam_maps(cam: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
    """``cam(*args, **kwargs)``'s maps as a float32 tensor on the device the CAM computed them on.

    Args:
        cam: a CAM object (a :class:`~pytorch_grad_cam.base_cam.BaseCAM` returns its tensor; any
            other callable's numpy result is wrapped as a CPU tensor).
        *args, **kwargs: the call's arguments.

    Returns:
        ``(B, *spatial)`` float32 maps.
    """
    token = _TENSOR_RESULT.set(True)
    try:
        result = cam(*args, **kwargs)
    finally:
        _TENSOR_RESULT.reset(token)
    if isinstance(result, np.ndarray):
        return torch.from_numpy(result)
    return result


@contextlib.contextmanager
def tensor_result_requested() -> Iterator[bool]:
    """For a CAM's ``__call__``: yields whether its caller asked for a tensor (:func:`cam_maps`);
    while it runs, CAM calls made inside it return numpy."""
    wanted = _TENSOR_RESULT.get()
    token = _TENSOR_RESULT.set(False)
    try:
        yield wanted
    finally:
        _TENSOR_RESULT.reset(token)
