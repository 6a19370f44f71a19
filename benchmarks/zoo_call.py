"""One zoo measurement on a given input: the model's forward, the first layer search (cache
cleared) and a GradCAM call with the choice cached, timed as ratios to the forward; shared by the
image rows (``zoo.py``) and the video rows (``zoo_video.py``)."""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam import GradCAM, layer_search
from pytorch_grad_cam.layer_search import find_target_layer


def median_time(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def search_and_call(model: nn.Module, x: torch.Tensor) -> tuple[dict, np.ndarray, list[str]]:
    """The row's timing and layer fields, the call's ``(1, *x.shape[2:])`` maps and its warnings'
    messages (first 200 characters, sorted, each once)."""
    with torch.no_grad():
        model(x)  # warm-up
        forward = median_time(lambda: model(x))
    layer_search.clear_cache()
    start = time.perf_counter()
    choice = find_target_layer(model, x)
    fields = {
        "search_x_forward": round((time.perf_counter() - start) / forward, 2),
        "layer": choice.name,
        "layer_type": type(choice.layer).__name__,
        "depth": f"{choice.depth}/{choice.modules_run}",
        "layout": choice.layout.describe(),
        "grid": "x".join(map(str, choice.grid)),
        "channels": choice.layout.channels,
    }
    cam = GradCAM(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cam(x)
        fields["gradcam_x_forward"] = round(median_time(lambda: cam(x)) / forward, 2)
        maps = cam(x)
    return fields, maps, sorted({str(w.message)[:200] for w in caught})


def map_is_valid(maps: np.ndarray, x: torch.Tensor) -> bool:
    """One finite map in [0, 1] of the input's size."""
    return bool(
        maps.shape == (1, *x.shape[2:])
        and torch.isfinite(torch.from_numpy(maps)).all()
        and maps.min() >= 0
        and maps.max() <= 1
    )
