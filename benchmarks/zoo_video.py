"""The zoo's video rows: every torchvision video classifier (random seeded weights) on its smallest
clip ``(1, 3, T, H, W)``, explained with no configuration (issue 20, item 3).

Used by ``benchmarks/zoo.py`` (``--only video``); a row has the same fields as the others, its
``size`` written ``TxHxW``, and ``ok`` asks for a ``(1, T, H, W)`` map. The search time is the
first ``find_target_layer`` (cache cleared), as for images.

S3D keeps PyTorch's default initialisation: with random weights its last block's activations shrink
to about 1e-7 and its scores are its classifier's biases alone (the top class's map is blank). Its
convolutions get the Kaiming-normal (fan-out) initialisation torchvision's video ResNets use
(``reinitialised`` in the row).
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import torch
from torch import nn
from zoo_call import map_is_valid, search_and_call

#: (torchvision name, frames, side): the smallest clip each takes (S3D's last average pool needs a
#: 2x7x7 map; MViT's positions are fixed at 16x224x224 by ``mvit_v1_b``/``mvit_v2_s``).
VIDEO_MODELS = (
    ("r3d_18", 8, 64),
    ("mc3_18", 8, 64),
    ("r2plus1d_18", 8, 64),
    ("s3d", 13, 209),
    ("swin3d_t", 8, 64),
    ("mvit_v2_s", 16, 224),
    ("swin3d_s", 8, 64),
    ("swin3d_b", 8, 64),
    ("mvit_v1_b", 16, 224),
)
FRAMES = {f"vid:{name}": frames for name, frames, _ in VIDEO_MODELS}


def video_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    from torchvision.models import video

    for name, _, side in VIDEO_MODELS:

        def build(name=name) -> nn.Module:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return getattr(video, name)(weights=None)

        yield f"vid:{name}", build, side


def reinitialise(model: nn.Module) -> int:
    """Kaiming-normal (fan-out) weights for every ``Conv3d``; returns how many."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    with torch.no_grad():
        for module in convolutions:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return len(convolutions)


def run_video(name: str, build: Callable[[], nn.Module], side: int) -> dict:
    """One zoo row of a video model (see :mod:`benchmarks.zoo`)."""
    frames = FRAMES[name]
    row: dict = {"model": name, "size": f"{frames}x{side}x{side}"}
    model = build().eval()
    row["reinitialised"] = reinitialise(model) if name == "vid:s3d" else 0
    x = torch.rand(1, 3, frames, side, side, generator=torch.Generator().manual_seed(0))
    fields, maps, messages = search_and_call(model, x)
    row.update(fields)
    row["map_shape"] = list(maps.shape)
    row["ok"] = map_is_valid(maps, x)
    row["blank"] = bool(maps.max() <= 0)
    row["warnings"] = messages
    return row
