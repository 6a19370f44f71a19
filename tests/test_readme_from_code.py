"""README's "Using it from code" block runs as written, alone, from the repository root."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _from_code_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it from code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]


def test_the_block_defines_everything_it_uses_and_gives_a_cam_of_the_photo(monkeypatch):
    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    namespace: dict = {}  # nothing given: model, x and rgb_img come from the block itself
    exec(compile(_from_code_block(), "README.md", "exec"), namespace)
    rgb_img, x = namespace["rgb_img"], namespace["x"]
    assert rgb_img.dtype == np.float32 and rgb_img.shape == (224, 224, 3)
    assert rgb_img.min() >= 0.0 and rgb_img.max() <= 1.0
    assert x.shape == (1, 3, 224, 224)
    # x is rgb_img normalised with ImageNet's mean and std (red channel, one pixel)
    assert abs(float(x[0, 0, 100, 100]) - (rgb_img[100, 100, 0] - 0.485) / 0.229) < 1e-5
    grayscale = namespace["grayscale"]
    assert grayscale.shape == (1, 224, 224) and 0.0 < grayscale.max() <= 1.0  # (aug_smooth: a mean)
    assert namespace["visualization"].shape == (224, 224, 3)
