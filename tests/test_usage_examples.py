"""The usage examples run offline, quickly, on small inputs, and write their images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "usage_examples"
CHELSEA = str(ROOT / "examples" / "chelsea.png")


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


def test_faster_rcnn_example_writes_into_its_output_dir_under_its_own_name(photo, tmp_path, capsys):
    load("faster_rcnn_example").main(
        ["--image-path", str(photo), "--image-size", "96", "--method", "eigencam"]
        + ["--output-dir", str(tmp_path)]
    )
    assert f"wrote {tmp_path / 'faster_rcnn_eigencam_cam.jpg'}" in capsys.readouterr().out
    assert Image.open(tmp_path / "faster_rcnn_eigencam_cam.jpg").size == (96, 96)


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


TRANSFORMERS = [
    # script, timm model, its reshape transform, tokens at the target layer, the map they become
    ("vit_example", "deit_tiny_patch16_224", "vit_reshape_transform", (1, 197, 192), (1, 192, 14, 14)),
    (
        "swinT_example",
        "swin_tiny_patch4_window7_224",
        "swinT_reshape_transform",
        (1, 7, 7, 768),
        (1, 768, 7, 7),
    ),
]


@pytest.mark.parametrize("name, model, transform_name, tokens, cam_map", TRANSFORMERS)
def test_transformer_examples_run_offline_with_a_note_on_random_weights(
    name, model, transform_name, tokens, cam_map, tmp_path, capsys, monkeypatch
):
    example = load(name)
    transform = getattr(example, transform_name)
    seen = []

    def spy(tensor):
        result = transform(tensor)
        seen.append((tuple(tensor.shape), tuple(result.shape)))
        return result

    monkeypatch.setattr(example, transform_name, spy)
    output = example.main(["--image-path", CHELSEA, "--method", "gradcam", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"note: {model} has random weights here (offline); --pretrained downloads ImageNet ones" in out
    assert seen == [(tokens, cam_map)] * 2  # the activations and their gradient
    prefix = "vit" if name == "vit_example" else "swint"  # not cam.py's gradcam_cam.jpg, not each other's
    assert output == tmp_path / f"{prefix}_gradcam_cam.jpg" and f"wrote {output}" in out
    image = np.asarray(Image.open(output))
    assert image.shape == (224, 224, 3) and image.std() > 5


def test_efficientnet_example_on_the_real_model(tmp_path, capsys):
    example = load("efficientnet_example")
    written = example.main(["--image-path", CHELSEA, "--method", "gradcam++", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    top = int(out.split("top class: ")[1].split()[0])
    assert 281 <= top <= 285  # a cat
    names = [f"efficientnet_gradcam++_{suffix}.jpg" for suffix in ("cam", "gb", "cam_gb")]
    assert written == [tmp_path / name for name in names]
    for path in written:
        image = np.asarray(Image.open(path))
        assert image.shape == (224, 224, 3) and image.std() > 5


def test_pretrained_without_network_is_one_clear_error(monkeypatch, capsys, tmp_path):
    example = load("vit_example")

    def offline(*args, **kwargs):
        raise OSError("cannot reach huggingface.co")

    monkeypatch.setattr(example.timm, "create_model", offline)
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--image-path", CHELSEA, "--pretrained", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not download deit_tiny_patch16_224's weights" in err
    assert "leave out --pretrained" in err


@pytest.mark.parametrize("name", ["vit_example", "swinT_example", "efficientnet_example"])
def test_user_errors(name, monkeypatch, capsys):
    example = load(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--image-path", CHELSEA, "--use-cuda"])
    assert exit_info.value.code == 2 and "--use-cuda: CUDA is not available here" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--image-path", "missing.png"])
    assert exit_info.value.code == 2 and "--image-path missing.png: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--image-path", CHELSEA, "--method", "nope"])
    assert exit_info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


DETECTOR_EXAMPLES = [
    # script, its arguments, the random-weights note it prints, the prefix of the images it writes
    (
        "detection_example",
        ["--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--image-size", "64"],
        "fasterrcnn_mobilenet_v3_large_320_fpn has random weights",
        "fasterrcnn_mobilenet_v3_large_320_fpn_gradcam",
    ),
    ("yolo_example", ["--image-size", "64"], "yolov8n.yaml has random weights", "yolo_gradcam"),
    (
        "detr_example",
        ["--kind", "detr", "--image-size", "64"],
        "detr model is small and has random",
        "detr_gradcam",
    ),
]


@pytest.mark.parametrize("name, arguments, note, prefix", DETECTOR_EXAMPLES)
def test_detector_examples_write_one_image_per_box(name, arguments, note, prefix, photo, tmp_path, capsys):
    if name == "yolo_example":
        pytest.importorskip("ultralytics")
    if name == "detr_example":
        pytest.importorskip("transformers")
    out = tmp_path / "out"
    written = load(name).main(
        ["--image-path", str(photo), "--max-boxes", "2", "--output-dir", str(out), *arguments]
    )
    printed = capsys.readouterr().out
    assert note in printed and "explaining 2 boxes" in printed
    assert written == [out / f"{prefix}_box{k}.png" for k in range(2)]
    for path in written:
        image = np.asarray(Image.open(path))
        assert image.shape == (64, 64, 3)
        assert (image == 255).all(axis=2).sum() > 8  # the white box outline is drawn


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_clip_example_writes_one_overlay_per_text_into_its_folder(photo, tmp_path, capsys, kind):
    example = load("clip_example")
    out = tmp_path / "cams"
    maps = example.main(
        ["--image-path", str(photo), "--texts", "a cat", "a dog", "--kind", kind, "--output-dir", str(out)]
    )
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == example.RANDOM_WEIGHTS_NOTE
    assert "layer vision_model." in printed
    assert sorted(p.name for p in out.iterdir()) == ["text_0.jpg", "text_1.jpg"]
    assert Image.open(out / "text_0.jpg").size == (64, 64)
    assert all(m.shape == (64, 64) and 0.99 < m.max() <= 1.0 for m in maps.values())
