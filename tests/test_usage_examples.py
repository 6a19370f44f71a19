"""The usage examples run offline, quickly, on small inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "usage_examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"usage_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(path)
    return path


def test_faster_rcnn_example(photo, tmp_path, capsys):
    output = tmp_path / "out.jpg"
    example = load("faster_rcnn_example")
    grayscale = example.main(
        ["--image-path", str(photo), "--image-size", "96", "--method", "eigencam", "--output", str(output)]
    )
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == example.RANDOM_WEIGHTS_NOTE
    assert "random weights" in printed and "--weights" in printed
    assert grayscale.shape == (96, 96) and 0.99 < grayscale.max() <= 1.0
    assert Image.open(output).size == (96, 96)


def test_segmentation_example(photo, tmp_path, capsys):
    output = tmp_path / "out.jpg"
    example = load("segmentation_example")
    grayscale = example.main(
        ["--image-path", str(photo), "--image-size", "64", "--method", "gradcam", "--output", str(output)]
    )
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == example.RANDOM_WEIGHTS_NOTE
    assert grayscale.shape == (64, 64) and 0.99 < grayscale.max() <= 1.0
    assert Image.open(output).size == (64, 64)


def test_examples_refuse_a_missing_image(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        load("segmentation_example").main(["--image-path", str(tmp_path / "nope.png")])
