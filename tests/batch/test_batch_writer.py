"""pytorch_grad_cam.batch.writer (through a run): every output file, the CAMs, the records."""

from __future__ import annotations

import json

import batch_helpers as H
import batch_models
import numpy as np
import torch
from PIL import Image

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam import batch as B
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD


def test_single_process_writes_every_output_and_one_manifest_line_per_image(photos, single_run):
    output, result = single_run
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    names = B.find_images(photos)
    assert len(names) == 40 and sorted(H.GOOD + list(H.CONVERTED) + list(H.BAD)) == names
    records = H.manifest(output)
    assert [record["name"] for record in records] == names
    assert result.stdout.startswith("40 images: 35 CAMs written, 0 already done, 5 bad files;")
    for record in records:
        assert record["method"] == "gradcam" and record["image"] == str((photos / record["name"]).resolve())
        if record["status"] != "ok":
            continue
        with Image.open(photos / record["name"]) as image:
            width, height = image.size
        cam = np.load(output / record["cam"])
        assert cam.dtype == np.float16 and cam.shape == (height, width) == tuple(record["cam_size"])
        assert cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0.5
        assert record["target"] == record["predicted"] and 0 < record["probability"] <= 1
        with Image.open(output / record["overlay"]) as overlay:
            assert overlay.size == (width, height) and overlay.mode == "RGB"
    assert not (output / B.SHARD_DIR).exists()
    assert json.loads((output / B.SETTINGS_NAME).read_text())["method"] == "gradcam"


def test_saved_cams_equal_gradcam_on_the_same_batch(photos, single_run):
    output, _ = single_run
    records = H.manifest(output)[: H.BATCH]  # the first batch: four RGB JPEGs
    pixels = []
    for record in records:
        with Image.open(photos / record["name"]) as image:
            resized = image.convert("RGB").resize((H.IMAGE_SIZE, H.IMAGE_SIZE), Image.BILINEAR)
        mean, std = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)  # float32 arithmetic throughout
        pixels.append((np.asarray(resized, dtype=np.float32) / np.float32(255) - mean) / std)
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    model = batch_models.tiny_cnn()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        maps = GradCAM(model, [model.features])(x)
        with torch.no_grad():
            probabilities = torch.softmax(model(x), dim=-1)
    finally:
        torch.set_num_threads(threads)
    for row, record in enumerate(records):
        expected = CF.resize_cams(torch.from_numpy(maps[row : row + 1]), record["cam_size"])[0].numpy()
        np.testing.assert_array_equal(np.load(output / record["cam"]), expected.astype(np.float16))
        assert record["predicted"] == int(probabilities[row].argmax())
        assert record["probability"] == round(float(probabilities[row].max()), 6)


def test_bad_files_are_recorded_with_reasons_and_odd_modes_converted(single_run):
    output, _ = single_run
    records = {record["name"]: record for record in H.manifest(output)}
    for name, reason in H.BAD.items():
        assert records[name]["status"] == "error" and reason in records[name]["error"], records[name]
        assert "cam" not in records[name]
    for name, mode in H.CONVERTED.items():
        assert records[name]["status"] == "ok" and records[name]["converted_from"] == mode
        assert (output / records[name]["cam"]).is_file()
    assert all(records[name]["converted_from"] is None for name in H.GOOD)
