"""pytorch_grad_cam.batch.sources (through a run): a dataset of tensors with meta, mixed shapes, bad items."""

from __future__ import annotations

import batch_helpers as H
import batch_models
import numpy as np
import torch
from PIL import Image

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam import batch as B
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def test_a_dataset_of_tensor_and_meta_with_mixed_shapes_and_bad_items(tmp_path):
    model = batch_models.tiny_cnn()
    summary = B.run(
        model,
        [model.features],
        H.Items(),
        "gradcam",
        output_dir=tmp_path,
        batch_size=4,
        num_workers=2,
        targets=lambda meta: meta["label"],
        save_overlay=True,
    )
    assert (summary.total, summary.written, summary.failed) == (12, 10, 2)
    records = H.manifest(tmp_path)
    assert [record["name"] for record in records] == [f"{i:02d}" for i in range(12)]
    assert records[3]["status"] == "error" and records[3]["error"] == "RuntimeError: sensor glitch"
    assert records[6]["status"] == "error" and "not a floating (C, H, W) tensor" in records[6]["error"]
    assert records[6]["meta"] is None
    items = H.Items()
    for start in range(0, 12, 4):  # each batch, one CAM call per input shape, as the runner does
        good = [i for i in range(start, start + 4) if i not in (3, 6)]
        for shape in dict.fromkeys(tuple(items[i][0].shape) for i in good):
            group = [i for i in good if tuple(items[i][0].shape) == shape]
            x = torch.stack([items[i][0] for i in group])
            maps = GradCAM(model, [model.features])(x, targets=[ClassifierOutputTarget(i % 5) for i in group])
            logits = model(x)
            for row, i in enumerate(group):
                record = records[i]
                assert record["meta"] == {"id": i, "label": i % 5} and record["target"] == i % 5
                assert record["predicted"] == int(logits[row].argmax()) and record["cam_size"] == list(
                    shape[1:]
                )
                np.testing.assert_array_equal(np.load(tmp_path / record["cam"]), maps[row].astype(np.float16))
                with Image.open(tmp_path / record["overlay"]) as overlay:
                    assert overlay.size == (shape[2], shape[1])


def test_cam_size_resizes_every_cam(tmp_path):
    model = batch_models.tiny_cnn()
    B.run(
        model, [model.features], H.Items(), "layercam", output_dir=tmp_path, cam_size=(8, 12), num_workers=0
    )
    for record in H.manifest(tmp_path):
        if record["status"] == "ok":
            assert np.load(tmp_path / record["cam"]).shape == (8, 12) and record["cam_size"] == [8, 12]
