"""The dataset command's words to a new user (pytorch_grad_cam.cli.dataset, batch.summary): class
names for ``--category``, an empty ``--image-dir``, a changed method on a used folder, plurals."""

from __future__ import annotations

import warnings

import batch_helpers as H
import numpy as np
from PIL import Image

from pytorch_grad_cam.batch.summary import BatchSummary
from pytorch_grad_cam.cli import dataset
from pytorch_grad_cam.cli import dataset as command


def _photos(folder, count=1):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def test_category_takes_a_class_name_as_the_single_image_command_does(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_run(model, layers, image_dir, method, **options):
        seen.update(options)
        return BatchSummary(1, 1, 0, 0, 0.1, 0.0, 0.1, 0.0, tmp_path / "m.jsonl", [], 1)

    monkeypatch.setattr(command, "run", fake_run)
    photos = _photos(tmp_path / "photos")
    base = ["--image-dir", str(photos), "--output-dir", str(tmp_path / "out")]
    assert dataset.main([*base, "--category", "tiger cat"], prog="cam.py") == 0, capsys.readouterr().err
    assert seen["targets"] == 282
    assert dataset.main([*base, "--category", "281"], prog="cam.py") == 0
    assert seen["targets"] == 281
    assert dataset.main([*base, "--category", "tiger kat"], prog="cam.py") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'tiger cat' (282)" in err


def test_a_model_without_names_takes_an_index_and_refuses_a_name(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    arguments = [*H.command(photos, tmp_path / "out"), "--num-workers", "0", "--no-progress"]
    assert dataset.main([*arguments, "--category", "tabby"], prog="cam.py") == 2
    assert "this model has no class names; pass a class index" in capsys.readouterr().err
    assert dataset.main([*arguments, "--category", "1"], prog="cam.py") == 0  # the model's top class is 3
    assert '"predicted": 3' in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8")
    assert '"target": 1,' in (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8")


def test_an_empty_image_dir_is_one_line_and_status_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no pictures here", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw UserWarning any more
        code = dataset.main(H.command(empty, tmp_path / "out"), prog="cam.py")
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"cam.py: error: --image-dir {empty}: no images in it or its subfolders " + (
        "(.jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff)\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_changed_method_names_the_options_not_python_keywords(tmp_path, capsys):
    photos = _photos(tmp_path / "photos", 2)
    arguments = [*H.command(photos, tmp_path / "out"), "--num-workers", "0", "--no-progress"]
    assert dataset.main(arguments, prog="cam.py") == 0
    capsys.readouterr()
    assert dataset.main([*arguments, "--method", "gradcam++"], prog="cam.py") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "method='gradcam' (now 'gradcam++')" in err
    assert "use another --output-dir, or --no-resume to recompute everything" in err
    assert "resume=False" not in err and "output_dir" not in err


def test_summary_counts_are_plural_only_when_they_should_be(tmp_path):
    one = BatchSummary(1, 1, 1, 0, 1.0, 0.0, 1.0, 0.0, tmp_path / "m.jsonl", [], 1).line()
    assert one.startswith("1 image: 1 CAM written, 0 already done, 1 bad file; ")
    two = BatchSummary(2, 2, 0, 0, 1.0, 0.0, 1.0, 0.0, tmp_path / "m.jsonl", [], 1).line()
    assert two.startswith("2 images: 2 CAMs written, 0 already done, 0 bad files; ")
