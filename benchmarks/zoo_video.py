"""The zoo's video rows: every torchvision video classifier (random seeded weights) on its smallest
clip ``(1, 3, T, H, W)``, and HuggingFace's video classifiers from small configs on clips given
frames first, ``(1, T, 3, H, W)``, explained with no configuration (issue 20, item 3).

Used by ``benchmarks/zoo.py`` (``--only video``); a row has the same fields as the others, its
``size`` written ``TxHxW``, and ``ok`` asks for a ``(1, T, H, W)`` map. The search time is the
first ``find_target_layer`` (cache cleared), as for images. A HuggingFace row (``hfvid:``) says
``frames_first``; its model is built as the HuggingFace image rows are (``zoo_more.py``): a small
config (2 layers, width 32), weights seeded, 8 frames of 32x32 cut into 8x8 patches.

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

#: HuggingFace video classifiers: (family, config class, config kwargs) for
#: ``{family}ForVideoClassification``, all on 8 frames of 32x32 (``HF_FRAMES``, ``HF_SIDE``) given
#: frames first; tubelets of 2 frames where the family has them (TimeSformer and VideoPrism embed
#: each frame on its own).
HF_FRAMES, HF_SIDE = 8, 32
_SMALL = dict(hidden_size=32, num_attention_heads=2, num_labels=10)
_LAYERS = dict(_SMALL, num_hidden_layers=2, intermediate_size=64)
HF_VIDEO = (
    ("VideoMAE", "VideoMAEConfig", dict(_LAYERS, image_size=32, patch_size=8, num_frames=8, tubelet_size=2)),
    ("Vivit", "VivitConfig", dict(_LAYERS, image_size=32, num_frames=8, tubelet_size=[2, 8, 8])),
    ("Timesformer", "TimesformerConfig", dict(_LAYERS, image_size=32, patch_size=8, num_frames=8)),
    (
        "VJEPA2",
        "VJEPA2Config",
        dict(
            _SMALL, num_hidden_layers=2, crop_size=32, patch_size=8, frames_per_clip=8, tubelet_size=2,
            num_pooler_layers=1, pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1,
        ),
    ),
    (
        "VideoPrism",
        "VideoPrismVisionConfig",
        dict(
            _SMALL, intermediate_size=64, image_size=32, num_frames=8, tubelet_size=[1, 8, 8],
            num_spatial_layers=2, num_temporal_layers=2, num_auxiliary_layers=1,
        ),
    ),
)  # fmt: skip
FRAMES = {f"vid:{name}": frames for name, frames, _ in VIDEO_MODELS} | {
    f"hfvid:{family}ForVideoClassification": HF_FRAMES for family, _, _ in HF_VIDEO
}


def video_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    from torchvision.models import video

    for name, _, side in VIDEO_MODELS:

        def build(name=name) -> nn.Module:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return getattr(video, name)(weights=None)

        yield f"vid:{name}", build, side
    yield from hf_video_models()


def hf_video_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    """HuggingFace's video classifiers of :data:`HF_VIDEO` (those the installed transformers has)."""
    import transformers as T

    for family, config_name, kwargs in HF_VIDEO:
        model_class = getattr(T, f"{family}ForVideoClassification", None)
        if model_class is None:
            continue
        config_class = getattr(T, config_name)

        def build(config_class=config_class, model_class=model_class, kwargs=kwargs) -> nn.Module:
            torch.manual_seed(0)
            return model_class(config_class(**kwargs))

        yield f"hfvid:{model_class.__name__}", build, HF_SIDE


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
    frames_first = name.startswith("hfvid:")
    if frames_first:
        row["frames_first"] = True
    generator = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 3, frames, side, side, generator=generator)  # (1, C, T, H, W)
    x = clip.transpose(1, 2).contiguous() if frames_first else clip  # (1, T, C, H, W) frames first
    fields, maps, messages = search_and_call(model, x)
    row.update(fields)
    row["map_shape"] = list(maps.shape)
    row["ok"] = map_is_valid(maps, clip)
    row["blank"] = bool(maps.max() <= 0)
    row["warnings"] = messages
    return row
