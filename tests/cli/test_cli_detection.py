"""``cam.py --task detection`` (pytorch_grad_cam.cli.detection): one picture and one line per box above
the threshold, for a torchvision detector and a YOLO built from its YAML; the refusals."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytorch_grad_cam.cli import console
from pytorch_grad_cam.cli.detection import DETECTION_METHODS, load_detector
from pytorch_grad_cam.detection.outputs import model_detections
from pytorch_grad_cam.utils.drawing import load_photo, photo_array

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = str(ROOT / "examples" / "chelsea.png")
SSD = "ssdlite320_mobilenet_v3_large"
FCOS = "fcos_resnet50_fpn"
BOX_LINE = re.compile(r"^box (\d+): (.+) (\d\.\d\d) at \((-?\d+), (-?\d+), (-?\d+), (-?\d+)\) -> (.+)$", re.M)


def _run(capsys, *args):
    code = console.main(["--task", "detection", "--image-path", CHELSEA, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _direct(model_name, size, threshold, weights=None):
    """The boxes above ``threshold`` as model_detections gives them on the same seeded model."""
    model, label_name, _ = load_detector(model_name, weights, size, 0.0)
    x = torch.from_numpy(photo_array(load_photo(CHELSEA), (size, size))).permute(2, 0, 1)[None].float()
    (found,) = model_detections(model, x, score_threshold=threshold)
    return found, label_name


def test_torchvision_detector_one_picture_and_line_per_box_above_the_threshold(capsys, tmp_path):
    # FCOS with random weights scores its boxes apart (SSDlite and YOLO score them all alike)
    found, label_name = _direct(FCOS, 64, 0.0)
    # a threshold in the first gap between scores after the 2nd best: exactly `above` boxes pass it
    scores = found.scores.tolist()
    above = next(k for k in range(2, 10) if scores[k - 1] - scores[k] > 1e-5)
    threshold = (scores[above - 1] + scores[above]) / 2
    assert int((found.scores > threshold).sum()) == above
    code, out, err = _run(
        capsys, "--model", FCOS, "--image-size", "64", "--box-threshold", repr(threshold),
        "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0 and err == "", err
    assert "note: fcos_resnet50_fpn has random weights, so its boxes are meaningless" in out
    assert f"{FCOS}: {above} boxes above --box-threshold {threshold}\n" in out
    # boxes of zero width or height are explained like the others (this fixture has some)
    boxes = found.boxes[:above]
    assert bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any())
    assert "left out" not in out
    lines = BOX_LINE.findall(out)
    assert len(lines) == above == len(list((tmp_path / "out").glob("*.jpg")))
    want = sorted(
        (label_name(int(label)), f"{float(score):.2f}", *(f"{float(v):.0f}" for v in box))
        for box, label, score in zip(found.boxes[:above], found.labels[:above], found.scores[:above])
    )
    assert sorted(line[1:7] for line in lines) == want  # the same boxes, labels and scores
    for k, line in enumerate(lines):
        assert int(line[0]) == k and line[7] == str(tmp_path / "out" / f"gradcam_box{k}.jpg")
        image = np.asarray(Image.open(line[7]))
        assert image.shape == (64, 64, 3) and image.std() > 5


def test_no_box_above_the_threshold_is_one_line_and_exit_0(capsys, tmp_path):
    found, _ = _direct(SSD, 64, 0.0)
    threshold = float(found.scores.max()) + 1e-3
    code, out, err = _run(
        capsys, "--model", SSD, "--image-size", "64", "--box-threshold", repr(threshold),
        "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and err == ""
    assert out.splitlines()[-1] == f"no box scores above --box-threshold {threshold}: nothing to explain"
    assert list(tmp_path.iterdir()) == []


def test_yolo_from_its_yaml(capsys, tmp_path):
    pytest.importorskip("ultralytics")
    found, label_name = _direct("yolo:yolov8n.yaml", 96, 0.0)
    code, out, err = _run(
        capsys, "--model", "yolo:yolov8n.yaml", "--image-size", "96", "--box-threshold", "0",
        "--max-boxes", "2", "--method", "eigencam", "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and err == "", err
    assert "yolo:yolov8n.yaml: 2 boxes above --box-threshold 0.0 (and more: --max-boxes)" in out
    lines = BOX_LINE.findall(out)
    # a random YOLO scores many boxes alike, so which two are first is arbitrary: they are among them
    top = {
        (label_name(int(k)), f"{float(v):.2f}")
        for k, v in zip(found.labels, found.scores)
        if v == found.scores[0]
    }
    assert len(lines) == 2 and {(line[1], line[2]) for line in lines} <= top
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eigencam_box0.jpg", "eigencam_box1.jpg"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", SSD, "--method", "scorecam"], "--method scorecam does not explain detector boxes here"),
        (["--model", SSD, "--method", "gradcm"], "unknown method; did you mean gradcam"),
        (["--model", "fasterrcnn_resnet5_fpn"], "did you mean fasterrcnn_resnet50_fpn"),
        (["--model", SSD, "--box-threshold", "1.5"], "expected a number in [0, 1); got 1.5"),
        (["--model", "yolo:yolov8n.yaml", "--image-size", "100"], "a multiple of 32 for YOLO"),
        (["--model", "yolo:missing.pt"], "--model yolo:missing.pt: no such file"),
        (["--model", SSD, "--weights", "missing.pt"], "--weights missing.pt: no such file"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_exit_2(capsys, args, message):
    code, out, err = _run(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert err.startswith("pytorch-grad-cam --task detection: error: ")


def test_the_refusal_names_every_method_that_works(capsys):
    code, out, err = _run(capsys, "--model", SSD, "--method", "ablationcam")
    assert code == 2 and err.rstrip().endswith(", ".join(DETECTION_METHODS))


def test_yolo_without_ultralytics_says_so_in_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import ultralytics -> ImportError
    code, out, err = _run(capsys, "--model", "yolo:yolov8n.yaml")
    assert (
        code == 2 and err.count("\n") == 1 and "needs ultralytics (AGPL-3.0), which is not installed" in err
    )


def test_unknown_task(capsys):
    code = console.main(["--task", "keypoints", "--image-path", CHELSEA])
    err = capsys.readouterr().err
    assert (
        code == 2
        and "--task keypoints: choose classification (the default), detection or segmentation" in err
    )


def test_library_modules_do_not_import_ultralytics():
    import subprocess

    code = "import sys, pytorch_grad_cam.cli.console; print('ultralytics' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_readme_detection_command_as_written(capsys, tmp_path, monkeypatch):
    """The docs' ``--task detection`` command (docs/command-line.md): three pictures and three box lines."""
    from markdown_blocks import commands

    (command,) = [line for line in commands() if line.startswith("python cam.py --task detection ")]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    code = console.main(shlex.split(command)[2:])
    out = capsys.readouterr().out
    assert code == 0
    lines = BOX_LINE.findall(out)
    assert [line[7] for line in lines] == [f"boxes/gradcam_box{k}.jpg" for k in range(3)]
    for line in lines:
        image = np.asarray(Image.open(tmp_path / line[7]))
        assert image.shape == (640, 640, 3) and image.std() > 5


def test_split_task_spellings():
    assert console.split_task(["--task=detection", "--x", "1"]) == ("detection", ["--x", "1"])
    assert console.split_task(["--x", "--task", "Detection"]) == ("detection", ["--x"])
    assert console.split_task(["--x"]) == ("classification", ["--x"])
