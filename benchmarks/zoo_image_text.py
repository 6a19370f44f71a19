"""The zoo's image-text rows: HuggingFace CLIPModel, SiglipModel and Siglip2Model from small configs,
explained with no configuration on the processor-style dict (``pixel_values``, ``input_ids``,
``attention_mask``; for SigLIP2 the image cut into flattened patches with ``spatial_shapes`` and
``pixel_attention_mask``, as its processor gives it) and
:class:`~pytorch_grad_cam.utils.model_targets.ImageTextTarget` (text 0).

Used by ``benchmarks/zoo.py`` (``--only image-text``); a row has the same fields as the others. The
search time is the first CAM call's (the path check, the search and the CAM) less a cached call's,
after one untimed call of another CAM object (what the process loads once: SigLIP2's first call
otherwise took eight times its later first calls).
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Iterator

import torch
from torch import nn

from pytorch_grad_cam import GradCAM, layer_search
from pytorch_grad_cam._core.patch_inputs import PatchGrid
from pytorch_grad_cam.utils.model_targets import ImageTextTarget

TEXT = dict(
    vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=2,
)  # fmt: skip
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)


def image_text_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    import transformers as T

    specs = [
        ("CLIPModel", "CLIPConfig", 64, 8),
        ("CLIPModel", "CLIPConfig", 96, 16),
        ("SiglipModel", "SiglipConfig", 64, 8),
        ("SiglipModel", "SiglipConfig", 96, 16),
        ("Siglip2Model", "Siglip2Config", 64, 8),  # takes the image as flattened patches
        ("Siglip2Model", "Siglip2Config", 96, 16),
    ]
    for model_name, config_name, size, patch in specs:

        def build(model_name=model_name, config_name=config_name, size=size, patch=patch) -> nn.Module:
            torch.manual_seed(0)
            vision = dict(VISION, patch_size=patch)
            if model_name != "Siglip2Model":  # SigLIP2 takes any grid of patches
                vision["image_size"] = size
            config = getattr(T, config_name)(text_config=TEXT, vision_config=vision)
            return getattr(T, model_name)(config)

        yield f"it:{model_name}/p{patch}", build, size


def image_text_inputs(name: str, size: int) -> dict[str, torch.Tensor]:
    """The processor-style dict of one seeded ``size x size`` image and 3 texts of 6 tokens (SigLIP2:
    the image as its processor gives it, flattened patches with their grid and mask)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 100, (3, 6), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 1
    inputs = {
        "pixel_values": torch.randn(1, 3, size, size, generator=generator),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
    }
    if name.startswith("it:Siglip2Model"):
        patch = int(name.rsplit("/p", 1)[1])
        side = size // patch
        inputs["pixel_values"] = PatchGrid((side, side), patch, 3).patches(inputs["pixel_values"])
        inputs["spatial_shapes"] = torch.tensor([[side, side]])
        inputs["pixel_attention_mask"] = torch.ones(1, side * side, dtype=torch.long)
    return inputs


def run_image_text(name: str, build: Callable[[], nn.Module], size: int, median_time: Callable) -> dict:
    """One zoo row of an image-text model (see :mod:`benchmarks.zoo`)."""
    row: dict = {"model": name, "size": size}
    model = build().eval()
    inputs = image_text_inputs(name, size)
    with torch.no_grad():
        model(**inputs)
        forward = median_time(lambda: model(**inputs))
    targets = [ImageTextTarget(0)]
    with warnings.catch_warnings():  # one untimed call: what the process loads once (code, kernels)
        warnings.simplefilter("ignore")
        GradCAM(model)(inputs, targets=targets)
    layer_search.clear_cache()
    cam = GradCAM(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        cam(inputs, targets=targets)
        first = time.perf_counter() - start
        cached = median_time(lambda: cam(inputs, targets=targets))
        maps = cam(inputs, targets=targets)["pixel_values"]
    choice = cam.layer_choice
    row.update(
        layer=choice.name,
        layer_type=type(choice.layer).__name__,
        depth=f"{choice.depth}/{choice.modules_run}",
        layout=choice.layout.describe(),
        grid="x".join(map(str, choice.grid)),
        search_x_forward=round(max(first - cached, 0.0) / forward, 2),
        gradcam_x_forward=round(cached / forward, 2),
    )
    row["ok"] = bool(
        maps.shape == (1, size, size)
        and torch.isfinite(torch.from_numpy(maps)).all()
        and maps.min() >= 0
        and maps.max() <= 1
        and choice.name.startswith("vision_model.")
    )
    row["blank"] = bool(maps.max() <= 0)
    row["warnings"] = sorted({str(w.message)[:200] for w in caught})
    return row
