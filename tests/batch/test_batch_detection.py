"""pytorch_grad_cam.batch.detection: run(task="detection") saves one map per predicted box, equal to the
library's map of that box, resumes by box files, and records images without boxes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch.detection import detection_options, scaled_boxes
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.outputs import model_detections
from pytorch_grad_cam.detection.targets import DetectionTarget

HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    # random weights: every box scores about 1/91, so box_score_thresh=0 keeps them
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, min_size=64, max_size=64
    )
    return model.eval()


def _images(count: int = 2) -> list[tuple[torch.Tensor, dict]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.rand(3, HEIGHT, WIDTH, generator=generator), {"id": i}) for i in range(count)]


def _records(output_dir):
    return [json.loads(line) for line in (output_dir / B.MANIFEST_NAME).read_text().splitlines()]


def _run(detector, dataset, output_dir, **options):
    layers, reshape = detector_target_layers(detector)
    arguments = {"box_threshold": 0.0, "max_boxes": 2, "batch_size": 2, "num_workers": 0, **options}
    return B.run(
        detector,
        layers,
        dataset,
        "gradcam",
        output_dir=output_dir,
        reshape_transform=reshape,
        task="detection",
        **arguments,
    )


def test_each_box_map_is_the_librarys_map_of_that_box(detector, tmp_path):
    dataset = _images()
    summary = _run(detector, dataset, tmp_path, save_overlay=True, class_names=[f"c{k}" for k in range(91)])
    assert (summary.total, summary.written, summary.skipped) == (2, 2, 0)
    records = _records(tmp_path)
    assert [r["name"] for r in records] == ["0", "1"]
    layers, reshape = detector_target_layers(detector)
    cam = GradCAM(detector, layers, reshape_transform=reshape)
    for index, record in enumerate(records):
        x = dataset[index][0][None]
        (found,) = model_detections(detector, x, score_threshold=0.0, max_detections=2)
        assert record["status"] == "ok" and record["task"] == "detection" and record["meta"] == {"id": index}
        assert len(record["boxes"]) == 2
        for k, entry in enumerate(record["boxes"]):
            label, box = int(found.labels[k]), found.boxes[k]
            assert entry["label"] == label and entry["label_name"] == f"c{label}"
            assert entry["score"] == round(float(found.scores[k]), 6)
            assert entry["input_box"] == [round(float(v), 2) for v in box]
            assert entry["box"] == entry["input_box"]  # the map is saved at the input's size here
            assert entry["cam"] == f"{index}.box{k}.npy"
            saved = np.load(tmp_path / entry["cam"])
            assert saved.dtype == np.float16 and saved.shape == (HEIGHT, WIDTH)
            want = cam(x, [DetectionTarget([label], box[None])])[0]
            np.testing.assert_allclose(saved.astype(np.float32), want, atol=2e-3, rtol=0)
            overlay = tmp_path / entry["overlay"]
            assert entry["overlay"] == f"{index}.box{k}.overlay.jpg" and overlay.is_file()
        # (this random detector's boxes all share one map: BoxRegions below tells boxes apart)


class BoxRegions(torch.nn.Module):
    """A torchvision-style detector with two fixed boxes, each scored by the input inside it only:
    HiResCAM's map of a box is zero outside it."""

    BOXES = torch.tensor([[0.0, 0.0, 16.0, 24.0], [32.0, 24.0, 64.0, 48.0]])

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.features.weight.fill_(0.5)
            self.features.bias.zero_()

    def forward(self, x):
        maps = self.features(x)
        outputs = []
        for image in maps:
            means = torch.stack([image[:, 0:24, 0:16].mean(), image[:, 24:48, 32:64].mean()])
            scores = torch.sigmoid(means + torch.tensor([1.0, 0.0]))  # box 0 scores higher
            outputs.append({"boxes": self.BOXES.clone(), "labels": torch.tensor([1, 2]), "scores": scores})
        return outputs


def test_each_box_gets_its_own_boxs_map(tmp_path):
    model = BoxRegions()
    dataset = _images(2)
    B.run(
        model, [model.features], dataset, "hirescam", output_dir=tmp_path, task="detection",
        box_threshold=0.0, batch_size=2, num_workers=0,
    )  # fmt: skip
    for record in _records(tmp_path):
        assert [(entry["label"], entry["box"]) for entry in record["boxes"]] == [
            (1, [0.0, 0.0, 16.0, 24.0]),
            (2, [32.0, 24.0, 64.0, 48.0]),
        ]
        for entry, (x1, y1, x2, y2) in zip(record["boxes"], ((0, 0, 16, 24), (32, 24, 64, 48))):
            saved = np.load(tmp_path / entry["cam"]).astype(np.float32)
            inside = np.zeros_like(saved, dtype=bool)
            inside[y1:y2, x1:x2] = True
            assert saved[~inside].max() == 0.0 and saved[inside].min() > 0.0


def test_boxes_are_given_in_the_saved_maps_pixels():
    boxes = torch.tensor([[8.0, 4.0, 40.0, 44.0]])
    assert scaled_boxes(boxes, (48, 64), (96, 32)) == [[4.0, 8.0, 20.0, 88.0]]


def test_resume_redoes_only_the_batch_with_a_missing_box_file(detector, tmp_path):
    dataset = _images()
    _run(detector, dataset, tmp_path, batch_size=1)
    before = {path.name: path.read_bytes() for path in tmp_path.glob("*.npy")}
    assert sorted(before) == ["0.box0.npy", "0.box1.npy", "1.box0.npy", "1.box1.npy"]
    again = _run(detector, dataset, tmp_path, batch_size=1)
    assert (again.written, again.skipped) == (0, 2)
    (tmp_path / "1.box1.npy").unlink()
    stamps = {name: (tmp_path / name).stat().st_mtime_ns for name in ("0.box0.npy", "0.box1.npy")}
    resumed = _run(detector, dataset, tmp_path, batch_size=1)
    assert (resumed.written, resumed.skipped) == (1, 1)
    assert {path.name: path.read_bytes() for path in tmp_path.glob("*.npy")} == before
    assert all((tmp_path / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items())
    assert [r["name"] for r in _records(tmp_path)] == ["0", "1"]
    with pytest.raises(B.ConfigError, match=r"box_threshold=0.0 \(now 0.2\)"):
        _run(detector, dataset, tmp_path, batch_size=1, box_threshold=0.2)


def test_an_image_without_boxes_is_recorded_and_complete(detector, tmp_path):
    dataset = _images(2)
    # every box of the random detector scores about 0.011: none passes 0.5
    summary = _run(detector, dataset, tmp_path, box_threshold=0.5)
    assert summary.written == 2
    records = _records(tmp_path)
    assert [(r["status"], r["boxes"]) for r in records] == [("ok", []), ("ok", [])]
    assert not list(tmp_path.glob("*.npy"))
    assert _run(detector, dataset, tmp_path, box_threshold=0.5).skipped == 2


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"task": "keypoints"}, "task must be 'classification', 'detection' or 'segmentation'"),
        ({"box_threshold": 1.0}, r"box_threshold must be a number in \[0, 1\)"),
        ({"max_boxes": 0}, "max_boxes must be an int >= 1"),
        ({"targets": 3}, "does not take targets"),
        ({"html": True, "aug_smooth": True}, "does not take html, aug_smooth"),
    ],
)
def test_detection_options_are_checked(options, match):
    arguments = {"task": "detection", "box_threshold": 0.5, "max_boxes": 10, **options}
    extra = {key: arguments.pop(key, default) for key, default in (("targets", None), ("html", False))}
    with pytest.raises(B.ConfigError, match=match):
        detection_options(
            arguments["task"],
            arguments["box_threshold"],
            arguments["max_boxes"],
            method_name="gradcam",
            aug_smooth=arguments.get("aug_smooth", False),
            **extra,
        )
    with pytest.raises(B.ConfigError, match="does not explain detector boxes"):
        detection_options(
            "detection", 0.5, 10, method_name="scorecam", targets=None, html=False, aug_smooth=False
        )


def test_the_command_line_runs_a_folder_of_photos_through_a_detector(tmp_path, capsys):
    from PIL import Image

    from pytorch_grad_cam.cli import console

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
        photos / "a.png"
    )
    common = [
        "--task",
        "detection",
        "--image-dir",
        str(photos),
        "--model",
        "fasterrcnn_mobilenet_v3_large_320_fpn",
    ]
    code = console.main(
        [*common, "--output-dir", str(tmp_path / "out"), "--image-size", "64", "--box-threshold", "0",
         "--max-boxes", "2", "--num-workers", "0"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and "1 image: 2 box CAMs for 1 image written, 0 already done" in out
    assert "has random weights, so its boxes are meaningless" in err
    (record,) = _records(tmp_path / "out")
    assert [entry["cam"] for entry in record["boxes"]] == ["a.png.box0.npy", "a.png.box1.npy"]
    assert record["boxes"][0]["label_name"] == "hair drier"  # COCO's class 89, named
    assert np.load(tmp_path / "out" / "a.png.box0.npy").shape == (40, 56)  # the photo's own size
    for extra, message in (
        (["--category", "3"], "does not take --category"),
        (["--image-size", "64x32"], "one number N"),
        (["--box-threshold", "1.5"], r"--box-threshold must be a number in \[0, 1\); got 1.5"),
        (["--method", "scorecam"], "does not explain detector boxes"),
    ):
        assert console.main([*common, "--output-dir", str(tmp_path / "refused"), *extra]) == 2
        assert re.search(message, capsys.readouterr().err)
