"""``cam.py --task segmentation`` (pytorch_grad_cam.cli.segmentation): one picture and one line per class
covering --min-area, on a hand-built segmenter whose maps are known (each class's map is its mask) and
on a torchvision segmenter; the refusals."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import batch_models
import numpy as np
import pytest
import torch
from PIL import Image

from pytorch_grad_cam.cli import console, segmentation
from pytorch_grad_cam.cli.segmentation import load_segmenter
from pytorch_grad_cam.utils.drawing import draw_mask, load_photo, photo_array, to_input_tensor
from pytorch_grad_cam.utils.image import show_cam_on_image

ROOT = Path(__file__).resolve().parents[2]
LRASPP = "lraspp_mobilenet_v3_large"
FACTORY = f"{ROOT / 'tests' / 'batch_models.py'}:colour_segmenter"
CLASS_LINE = re.compile(r"^class (\d+)( [^:]+)?: (\d+\.\d)% of the image -> (.+)$", re.M)


@pytest.fixture
def regions(tmp_path) -> Path:
    """40 x 40: black (class 0, 73%), a red 20 x 20 quarter (class 1, 25%), a blue 8 x 4 block (class 2,
    2%)."""
    path = tmp_path / "regions.png"
    Image.fromarray(batch_models.colour_regions()).save(path)
    return path


def _run(capsys, image, *args):
    code = console.main(["--task", "segmentation", "--image-path", str(image), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_picture_per_class_whose_map_is_its_mask_outlined(capsys, tmp_path, regions):
    out_dir = tmp_path / "out"
    code, out, err = _run(
        capsys, regions, "--model", FACTORY, "--image-size", "40", "--output-dir", str(out_dir)
    )
    assert code == 0 and err == "", err
    assert f"{FACTORY}: 3 classes cover --min-area 0.01 of the image\n" in out
    assert out.startswith("target layer features (Conv2d, ")  # the automatic layer, not the class-score map
    assert CLASS_LINE.findall(out) == [
        ("0", "", "73.0", str(out_dir / "gradcam_class0.jpg")),
        ("1", "", "25.0", str(out_dir / "gradcam_class1.jpg")),
        ("2", "", "2.0", str(out_dir / "gradcam_class2.jpg")),
    ]
    assert sorted(path.name for path in out_dir.iterdir()) == [f"gradcam_class{k}.jpg" for k in range(3)]
    rgb = batch_models.colour_regions().astype(np.float32) / 255
    model = batch_models.colour_segmenter()
    with torch.no_grad():
        labels = model(to_input_tensor(rgb, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))["out"][0].argmax(0)
    for k, text in ((0, "class 0 73%"), (1, "class 1 25%"), (2, "class 2 2%")):
        mask = (labels == k).numpy()
        # the map is the class's mask (known answer), drawn with the mask outlined and labelled
        want = draw_mask(show_cam_on_image(rgb, mask.astype(np.float32), use_rgb=True), mask, text)
        written = np.asarray(Image.open(out_dir / f"gradcam_class{k}.jpg")).astype(np.float32)
        error = np.abs(written - want).max(axis=2)  # per pixel, its worst channel
        reverse = np.abs(
            written - draw_mask(show_cam_on_image(rgb, 1.0 - mask, use_rgb=True), mask, text)
        ).max(axis=2)
        # JPEG's error on this tiny picture's sharp edges (medians 2 to 5); the reverse map is far (84 to 128)
        assert np.median(error) <= 6 and np.median(reverse) > 60
    # the outline: white on the red quarter's edge (row 19), the map's colour inside it
    red = np.asarray(Image.open(out_dir / "gradcam_class1.jpg")).astype(int)
    assert red[19, 10].min() > 200 and red[10, 10].min() < 150


def test_min_area_leaves_out_the_small_classes(capsys, tmp_path, regions):
    common = ["--model", FACTORY, "--image-size", "40", "--method", "hirescam"]
    code, out, err = _run(capsys, regions, *common, "--min-area", "0.05", "--output-dir", str(tmp_path / "a"))
    assert code == 0 and err == ""
    assert [line[0] for line in CLASS_LINE.findall(out)] == ["0", "1"]  # the blue 2% left out
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "hirescam_class0.jpg",
        "hirescam_class1.jpg",
    ]
    code, out, err = _run(capsys, regions, *common, "--min-area", "0.8", "--output-dir", str(tmp_path / "b"))
    assert code == 0 and err == ""
    assert out.splitlines()[-1] == "no class covers --min-area 0.8 of the image: nothing to explain"
    assert not (tmp_path / "b").exists()


def test_torchvision_segmenter_explains_the_classes_its_own_mask_holds(capsys, tmp_path, monkeypatch):
    photo = ROOT / "examples" / "cat_and_cup.png"
    loaded = load_segmenter("fcn_resnet50", None)
    monkeypatch.setattr(segmentation, "load_segmenter", lambda *args: loaded)  # built once (seconds)
    x = to_input_tensor(photo_array(load_photo(str(photo)), (64, 64)), loaded.mean, loaded.std)
    with torch.no_grad():
        labels = loaded.model(x)["out"][0].argmax(0)
    counts = torch.bincount(labels.flatten(), minlength=21)
    want = [
        (k, int(counts[k])) for k in counts.argsort(descending=True, stable=True).tolist() if counts[k] > 0
    ]
    want = [(k, n) for k, n in want if n / labels.numel() >= 0.01]
    assert len(want) >= 3  # this seeded random model's mask holds several classes above 1%
    code, out, err = _run(
        capsys, photo, "--model", "fcn_resnet50", "--image-size", "64", "--target-layer", "backbone.layer4",
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and err == "", err
    assert "target layer backbone.layer4 (Sequential): --target-layer\n" in out
    assert "note: fcn_resnet50 has random weights, so its masks are meaningless" in out
    names = loaded.categories
    assert [(int(k), name.strip(), share) for k, name, share, _ in CLASS_LINE.findall(out)] == [
        (k, names[k], f"{100 * n / labels.numel():.1f}") for k, n in want
    ]
    for k, _ in want:
        image = np.asarray(Image.open(tmp_path / f"gradcam_class{k}.jpg"))
        assert image.shape == (64, 64, 3) and image.std() > 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-area", "2"], "argument --min-area: expected a share of the image in [0, 1]; got 2"),
        (["--min-area", "-0.1"], "argument --min-area: expected a share of the image in [0, 1]; got -0.1"),
        (["--min-area", "most"], "argument --min-area: expected a share of the image in [0, 1]; got 'most'"),
        (["--method", "scorecam"], "--method scorecam does not explain segmenter classes here"),
        (["--method", "gradcm"], "unknown method; did you mean gradcam"),
        (["--model", "fcn_resnet5"], "--model fcn_resnet5: not a segmenter this command knows; did you mean"),
        (["--model", "tests/batch_models.py:tiny_cnn"], "holds no (B, K, H, W) class scores"),
        (["--model", FACTORY, "--target-layer", "nowhere"], "--target-layer"),
        (["--model", LRASPP, "--weights", "missing.pt"], "--weights missing.pt: no such file"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_exit_2(capsys, regions, monkeypatch, args, message):
    monkeypatch.chdir(ROOT)
    arguments = args if "--model" in args else ["--model", FACTORY, *args]
    code, out, err = _run(capsys, regions, "--image-size", "40", *arguments)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert err.startswith("pytorch-grad-cam --task segmentation: error: ")


def test_the_docs_segmentation_command_as_written(capsys, tmp_path, monkeypatch):
    """The docs' ``--task segmentation`` command (docs/command-line.md): one picture and line per class."""
    from markdown_blocks import commands

    (command,) = [line for line in commands() if line.startswith("python cam.py --task segmentation ")]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    code = console.main(shlex.split(command)[2:])
    out = capsys.readouterr().out
    assert code == 0
    lines = CLASS_LINE.findall(out)
    assert len(lines) >= 2 and all(line[3] == f"classes/gradcam_class{line[0]}.jpg" for line in lines)
    for line in lines:
        image = np.asarray(Image.open(tmp_path / line[3]))
        assert image.shape[2] == 3 and image.std() > 5


def test_the_dataset_runner_writes_and_records_every_class_of_every_image(capsys, tmp_path, regions):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    regions.rename(photos / "regions.png")
    (photos / "sub" / "bad.png").write_bytes(b"not a picture")
    common = ["--task", "segmentation", "--image-dir", str(photos), "--model", FACTORY, "--image-size", "40"]
    out_dir = tmp_path / "out"
    code = console.main([*common, "--output-dir", str(out_dir), "--num-workers", "0", "--min-area", "0.05"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    assert "2 images: 2 class CAMs for 1 image written, 0 already done, 1 bad file" in out
    good, bad = [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]
    assert [(c["class"], c["class_name"], c["area"], c["cam"]) for c in good["classes"]] == [
        (0, None, 0.73, "regions.png.class0.npy"),
        (1, None, 0.25, "regions.png.class1.npy"),
    ]
    assert bad["name"] == "sub/bad.png" and bad["status"] == "error"
    np.testing.assert_array_equal(
        np.load(out_dir / "regions.png.class1.npy"), batch_models.colour_regions()[..., 0] > 0
    )
    for extra, message in (
        (["--min-area", "2"], r"--min-area must be a share of the image in \[0, 1\]; got 2.0"),
        (["--min-area", "-1"], r"--min-area must be a share of the image in \[0, 1\]; got -1.0"),
        (["--category", "1", "--html"], "over its own mask; it does not take --category, --html"),
        (["--method", "scorecam"], "does not explain segmenter classes here"),
        (["--evaluate"], "--evaluate does not take --task segmentation"),
    ):  # fmt: skip
        assert console.main([*common, "--output-dir", str(tmp_path / "refused"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err


def test_weights_are_loaded_without_the_auxiliary_head(tmp_path):
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(1)
    state = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict()
    state["aux_classifier.0.weight"] = torch.ones(1)  # as torchvision's FCN / DeepLabV3 files hold
    torch.save(state, tmp_path / "weights.pt")
    loaded = load_segmenter("lraspp_mobilenet_v3_large", str(tmp_path / "weights.pt"))
    assert not loaded.random_weights
    assert all(torch.equal(value, state[key]) for key, value in loaded.model.state_dict().items())
    assert not any(module.training for module in loaded.model.modules())
