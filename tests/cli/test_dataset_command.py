"""pytorch_grad_cam.cli.dataset: the command line's mistakes, and the --model loader."""

from __future__ import annotations

import errno

import batch_helpers as H
import batch_models
import numpy as np
import pytest
import torch
from PIL import Image

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch import writer as writer_module
from pytorch_grad_cam.batch.files import atomic_write, save_npy
from pytorch_grad_cam.cli import dataset


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--method", "nosuchcam"], "unknown method 'nosuchcam'"),
        (["--target-layer", "features.9"], "no child '9'"),
        (["--model", "no_such_module_xyz:build"], "cannot import no_such_module_xyz"),
        (["--model", "nosuchnet"], "unknown model"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
    ],
)
def test_command_line_mistakes_give_one_line_and_status_2(tmp_path, capsys, extra, match):
    photos = tmp_path / "photos"
    photos.mkdir()
    arguments = ["--image-dir", str(photos), "--output-dir", str(tmp_path / "out")]
    arguments += ["--model", f"{H.MODELS}:tiny_cnn", "--target-layer", "features", *extra]
    assert dataset.main(arguments, prog="cam.py") == 2
    err = capsys.readouterr().err
    assert err.startswith("cam.py: error: ") and match in err and err.count("\n") == 1


def test_command_line_missing_image_dir(tmp_path, capsys):
    assert dataset.main(["--image-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path)], prog="x") == 2
    assert "no such folder" in capsys.readouterr().err


def test_load_model_factories_from_a_file_and_a_module():
    model, layers, names = dataset.load_model(f"{H.MODELS}:tiny_cnn")
    assert layers is None and names is None and not model.training
    assert torch.equal(model.head.weight, batch_models.tiny_cnn().head.weight)
    resnet, layers, names = dataset.load_model("torchvision.models:resnet18")
    assert type(resnet).__name__ == "ResNet" and layers is None
    with pytest.raises(B.UsageError, match="no callable 'nothing'"):
        dataset.load_model(f"{H.MODELS}:nothing")


def test_the_default_model_names_the_cat_and_the_cup(tmp_path):
    from skimage import data as skimage_data  # the test extra installs it, and the model's packages

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_data.chelsea()).save(photos / "chelsea.jpg")
    Image.fromarray(skimage_data.coffee()).save(photos / "coffee.jpg")
    model, layers, names = dataset.load_model("efficientnet_lite0")
    assert layers == [model._blocks[-1]] and len(names) == 1000
    summary = B.run(
        model,
        layers,
        photos,
        "gradcam",
        output_dir=tmp_path / "out",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        class_names=names,
        num_workers=0,
        cam_size=56,
    )
    assert summary.written == 2
    chelsea, coffee = H.manifest(tmp_path / "out")
    assert chelsea["predicted_name"] in ("tabby", "tiger cat", "Egyptian cat"), chelsea
    assert coffee["predicted_name"] in ("espresso", "cup", "coffee mug"), coffee
    assert chelsea["probability"] > 0.3


def test_an_output_path_that_is_a_file_gives_one_line_and_status_2(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(H.random_picture(np.random.default_rng(0))).save(photos / "x.png")
    (tmp_path / "out").write_text("a file in the way")
    arguments = ["--image-dir", str(photos), "--output-dir", str(tmp_path / "out")]
    assert (
        dataset.main([*arguments, "--model", f"{H.MODELS}:tiny_cnn", "--target-layer", "features"], prog="x")
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("x: error: --output-dir ") and "not a folder" in err


def test_disk_full_in_the_middle_leaves_no_half_file_and_a_rerun_completes(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for index in range(10):
        Image.fromarray(H.random_picture(rng)).save(photos / f"{index}.png")
    output = tmp_path / "out"
    arguments = ["--image-dir", str(photos), "--output-dir", str(output), "--batch-size", "4"]
    arguments += ["--model", f"{H.MODELS}:tiny_cnn", "--target-layer", "features", "--num-workers", "0"]
    written = []

    def save_until_the_disk_is_full(path, array):
        if len(written) == 6:  # the seventh CAM: half of it reaches the disk
            atomic_write(path, lambda file: (file.write(b"\x93NUMPY"), file.flush(), _disk_full())[0])
        save_npy(path, array)
        written.append(path)

    monkeypatch.setattr(writer_module, "save_npy", save_until_the_disk_is_full)
    assert dataset.main(arguments, prog="x") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(output) in err
    assert not list(output.rglob("*.tmp")) and len(list(output.rglob("*.npy"))) == 6
    for path in output.rglob("*.npy"):
        assert np.load(path).dtype == np.float16
    monkeypatch.undo()
    assert dataset.main(arguments, prog="x") == 0
    assert "10 images: 6 CAMs written, 4 already done" in capsys.readouterr().out  # the first batch was done
    records = H.manifest(output)
    assert [record["name"] for record in records] == [f"{i}.png" for i in range(10)]


def _disk_full():
    raise OSError(errno.ENOSPC, "No space left on device")
