"""cam.py --image-dir ... --evaluate: the leaderboard on stdout, the files, refusals, and two torchrun
processes writing the evaluation of one process."""

from __future__ import annotations

import json
import sys

import batch_helpers as H
import numpy as np
import pytest
from PIL import Image

from pytorch_grad_cam.cli.dataset import main


@pytest.fixture
def small_folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "photos"
    root.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (36, 36, 3)).astype(np.uint8)).save(root / f"{i}.png")
        coco["images"].append({"id": i, "file_name": f"{i}.png", "height": 36, "width": 36})
        polygon = [i, i, 20 + i, i, 20 + i, 24, i, 24]
        box = [i, i, 20, 24 - i]
        coco["annotations"].append({"image_id": i, "category_id": 1, "bbox": box, "segmentation": [polygon]})
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    return root, tmp_path / "instances.json"


def _arguments(root, csv, output):
    return [
        "--image-dir",
        str(root),
        "--output-dir",
        str(output),
        "--model",
        f"{H.MODELS}:tiny_cnn",
        "--target-layer",
        "features",
        "--image-size",
        "32",
        "--batch-size",
        "3",
        "--num-workers",
        "0",
        "--evaluate",
        "--method",
        "gradcam,layercam",
        "--annotations",
        str(csv),
        "--steps",
        "2",
        "--no-progress",
    ]


def test_evaluate_command_and_torchrun(small_folder, tmp_path, capsys):
    root, csv = small_folder
    assert main(_arguments(root, csv, tmp_path / "one"), prog="cam.py") == 0  # in this process
    stdout = capsys.readouterr().out
    assert "| gradcam |" in stdout and "| edges (baseline) |" in stdout
    assert "scored 10 of 10 images in" in stdout
    document = json.loads((tmp_path / "one" / "evaluation.json").read_text())
    assert list(document["leaderboard"]) == ["gradcam", "layercam", "random", "centre", "edges"]
    assert document["leaderboard"]["gradcam"]["pointing_game"]["count"] == 10  # from the COCO file
    assert (tmp_path / "one" / "report.html").is_file()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = H.run_cli(_arguments(root, csv, tmp_path / "two"), launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("scored 10 of 10 images") == 1 and "on 2 process(es)" in result.stdout
    for name in ("evaluation.json", "manifest.jsonl", "report.html"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_evaluate_refuses_what_it_does_not_take(small_folder, tmp_path, capsys):
    root, csv = small_folder
    assert main([*_arguments(root, csv, tmp_path / "o"), "--save-overlay"], prog="cam.py") == 2
    assert capsys.readouterr().err.strip() == "cam.py: error: --evaluate does not take --save-overlay"
    assert main([*_arguments(root, csv, tmp_path / "o"), "--sanity", "blur"], prog="cam.py") == 2
    assert "--sanity: unknown check blur" in capsys.readouterr().err


def test_an_interrupt_ends_with_one_line(small_folder, tmp_path, capsys, monkeypatch):
    from pytorch_grad_cam.cli import dataset

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "evaluate_command", interrupted)
    root, annotations = small_folder
    assert main(_arguments(root, annotations, tmp_path / "o"), prog="cam.py") == 130
    assert capsys.readouterr().err == (
        "cam.py: interrupted; the finished images are kept: run the same command again to resume\n"
    )
