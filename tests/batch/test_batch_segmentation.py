"""pytorch_grad_cam.batch.segmentation: run(task="segmentation") saves one map per predicted class covering
min_area, each the class's mask on a hand-built segmenter (a known answer), resumes by class files,
records bad images and images without classes, and refuses what it does not take."""

from __future__ import annotations

import json
import re

import batch_models
import numpy as np
import pytest
import torch
from PIL import Image

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch.segmentation import segmentation_options
from pytorch_grad_cam.utils.drawing import to_input_tensor
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD

NAMES = ["dark", "red", "blue"]


def _image(**options) -> torch.Tensor:
    """:func:`batch_models.colour_regions` as the segmenter's normalised ``(3, H, W)`` input."""
    rgb = batch_models.colour_regions(**options).astype(np.float32) / 255
    return to_input_tensor(rgb, IMAGENET_MEAN, IMAGENET_STD)[0]


def _masks(**options) -> list[np.ndarray]:
    """Class k's pixels of :func:`batch_models.colour_regions`, as the picture draws them."""
    rgb = batch_models.colour_regions(**options)
    red, blue = rgb[..., 0] == 255, rgb[..., 2] == 255
    return [~(red | blue), red, blue]


def _records(output_dir):
    return [json.loads(line) for line in (output_dir / B.MANIFEST_NAME).read_text().splitlines()]


def _run(dataset, output_dir, **options):
    model = batch_models.colour_segmenter()
    arguments = {"batch_size": 2, "num_workers": 0, "class_names": NAMES, **options}
    return B.run(model, [model.features], dataset, output_dir=output_dir, task="segmentation", **arguments)


def test_each_class_map_is_its_mask_and_recorded(tmp_path):
    dataset = [(_image(), {"id": 0}), (_image(height=20, width=50, blue=(10, 5)), {"id": 1})]
    summary = _run(dataset, tmp_path, save_overlay=True)
    assert (summary.total, summary.written, summary.class_maps, summary.skipped) == (2, 2, 6, 0)
    assert summary.line().startswith(
        "2 images: 6 class CAMs for 2 images written, 0 already done, 0 bad files"
    )
    first, second = _records(tmp_path)
    # 40 x 40: dark 1168 px, red 400 (20 x 20), blue 32 (8 x 4); 20 x 50: dark 700, red 250, blue 50
    assert [(c["class"], c["class_name"], c["area"]) for c in first["classes"]] == [
        (0, "dark", 0.73),
        (1, "red", 0.25),
        (2, "blue", 0.02),
    ]
    assert [(c["class"], c["area"]) for c in second["classes"]] == [(0, 0.7), (1, 0.25), (2, 0.05)]
    for index, (record, options) in enumerate(
        ((first, {}), (second, {"height": 20, "width": 50, "blue": (10, 5)}))
    ):
        assert (
            record["status"] == "ok" and record["task"] == "segmentation" and record["meta"] == {"id": index}
        )
        assert record["method"] == "gradcam" and record["cam_size"] == list(dataset[index][0].shape[1:])
        for entry in record["classes"]:
            k = entry["class"]
            assert (
                entry["cam"] == f"{index}.class{k}.npy"
                and entry["overlay"] == f"{index}.class{k}.overlay.jpg"
            )
            saved = np.load(tmp_path / entry["cam"])
            assert saved.dtype == np.float16
            np.testing.assert_array_equal(saved, _masks(**options)[k].astype(np.float16))  # the known answer
            overlay = np.asarray(Image.open(tmp_path / entry["overlay"]))
            assert overlay.shape == (*saved.shape, 3)


def test_min_area_changes_the_classes_and_a_resume_with_another_is_refused(tmp_path):
    dataset = [(_image(), None)]
    _run(dataset, tmp_path / "a", min_area=0.05)
    (record,) = _records(tmp_path / "a")
    assert [c["class"] for c in record["classes"]] == [0, 1]  # blue's 2% left out
    assert sorted(p.name for p in (tmp_path / "a").glob("*.npy")) == ["0.class0.npy", "0.class1.npy"]
    with pytest.raises(B.ConfigError, match=r"min_area=0.05 \(now 0.01\)"):
        _run(dataset, tmp_path / "a")
    _run(dataset, tmp_path / "b", min_area=0.8)  # no class covers 80%: complete with no class
    assert [r["classes"] for r in _records(tmp_path / "b")] == [[]]
    assert not list((tmp_path / "b").glob("*.npy"))
    assert _run(dataset, tmp_path / "b", min_area=0.8).skipped == 1


def test_resume_redoes_only_the_batch_with_a_missing_class_file(tmp_path):
    dataset = [(_image(), None), (_image(blue=(20, 20)), None)]
    _run(dataset, tmp_path, batch_size=1)
    before = {path.name: path.read_bytes() for path in tmp_path.glob("*.npy")}
    assert sorted(before) == [f"{i}.class{k}.npy" for i in range(2) for k in range(3)]
    assert _run(dataset, tmp_path, batch_size=1).skipped == 2
    (tmp_path / "1.class2.npy").unlink()
    stamp = (tmp_path / "0.class0.npy").stat().st_mtime_ns
    resumed = _run(dataset, tmp_path, batch_size=1)
    assert (resumed.written, resumed.skipped, resumed.class_maps) == (1, 1, 3)
    assert {path.name: path.read_bytes() for path in tmp_path.glob("*.npy")} == before
    assert (tmp_path / "0.class0.npy").stat().st_mtime_ns == stamp


def test_a_bad_image_is_recorded_and_the_others_are_written(tmp_path):
    bad = torch.zeros(2, 40, 40)  # two channels: the segmenter's convolution raises on it alone
    dataset = [(_image(), None), (bad, None), "not a tensor", (_image(), None)]
    summary = _run(dataset, tmp_path)
    assert (summary.written, summary.failed, summary.class_maps) == (2, 2, 6)
    records = _records(tmp_path)
    assert [r["status"] for r in records] == ["ok", "error", "error", "ok"]
    assert records[1]["error"].startswith("the model or the CAM failed on this image: RuntimeError: ")
    assert "not a floating (C, H, W) tensor" in records[2]["error"]
    assert [c["class"] for c in records[3]["classes"]] == [0, 1, 2]


def test_a_model_without_class_maps_fails_the_setup_in_one_error(tmp_path):
    model = batch_models.tiny_cnn()  # a classifier: (B, 5) scores
    with pytest.raises(ValueError, match=re.escape("holds no (B, K, H, W) class scores")):
        B.run(
            model, [model.features], [(_image(), None)] * 2, output_dir=tmp_path, task="segmentation",
            batch_size=2, num_workers=0,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"min_area": 2}, r"min_area must be a share of the image in \[0, 1\]; got 2"),
        ({"min_area": -0.1}, r"min_area must be a share of the image in \[0, 1\]; got -0.1"),
        ({"min_area": True}, r"min_area must be a share of the image in \[0, 1\]; got True"),
        ({"method_name": "scorecam"}, "does not explain segmenter classes here"),
        ({"targets": 3}, "does not take targets"),
        ({"html": True, "aug_smooth": True}, "does not take html, aug_smooth"),
    ],
)
def test_segmentation_options_are_checked(options, match):
    arguments = {
        "min_area": 0.01,
        "method_name": "gradcam",
        "targets": None,
        "html": False,
        "aug_smooth": False,
    }
    arguments.update(options)
    with pytest.raises(B.ConfigError, match=match):
        segmentation_options("segmentation", arguments.pop("min_area"), **arguments)
    assert segmentation_options("detection", 5.0, **arguments) is None  # another task's: not checked here


class _TrainingSegmenter(batch_models.ColourSegmenter):
    """:class:`batch_models.ColourSegmenter` with a batch norm after ``features``, left in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.norm(self.features(x)))}


def test_a_model_in_train_mode_runs_in_eval_mode_and_is_left_as_it_was(tmp_path):
    model = _TrainingSegmenter()  # train mode: a forward in it would update the running statistics
    model.norm.running_mean.fill_(0.5)  # eval mode: x - 0.5, red still class 1 and blue class 2
    before = {name: value.clone() for name, value in model.state_dict().items()}
    summary = B.run(
        model, [model.features], [(_image(), None)], output_dir=tmp_path, task="segmentation",
        batch_size=1, num_workers=0,
    )  # fmt: skip
    assert summary.class_maps == 3
    assert model.training and model.norm.training
    for name, value in model.state_dict().items():  # num_batches_tracked 0, the running mean 0.5
        assert torch.equal(value, before[name]), name


def test_the_class_maps_of_an_image_not_written_are_not_counted(tmp_path):
    photos, outside, output = tmp_path / "photos", tmp_path / "outside", tmp_path / "out"
    for folder in (photos / "sub", outside, output):
        folder.mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        Image.fromarray(batch_models.colour_regions()).save(photos / name)
    (output / "sub").symlink_to(outside)  # sub/b.png's files would go out of the output folder
    summary = _run(photos, output, image_size=40)
    assert (summary.written, summary.failed, summary.class_maps) == (1, 1, 3)  # a.png's 3 classes
    assert summary.line().startswith("2 images: 3 class CAMs for 1 image written, 0 already done, 1 bad")
    assert [r["status"] for r in _records(output)] == ["ok", "error"] and not list(outside.iterdir())
