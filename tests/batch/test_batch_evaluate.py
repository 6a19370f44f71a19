"""batch.evaluate: a folder scored end to end equals metrics.audit on the same tensors; resume, settings,
run(..., evaluate=...), the model left as it was, and a report whose names are escaped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SmallConvNet, assert_same_model, model_snapshot
from PIL import Image

from pytorch_grad_cam.batch import run
from pytorch_grad_cam.batch.evaluate import evaluate
from pytorch_grad_cam.batch.files import find_images
from pytorch_grad_cam.batch.sources import FolderSamples
from pytorch_grad_cam.errors import ConfigError
from pytorch_grad_cam.metrics.annotations import read_box_csv
from pytorch_grad_cam.metrics.audit import audit_batch
from pytorch_grad_cam.metrics.explainers import baseline_explainer, cam_explainer

NAMES = ["a.png", "b.png", "sub/c.png", "x<b>&.png", "d.png", "e.png"]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
OPTIONS = dict(
    annotations=None,
    batch_size=4,
    num_workers=0,
    image_size=32,
    mean=MEAN,
    std=STD,
    steps=2,
    worst=1,
    progress=False,
)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    lines = ["image,x1,y1,x2,y2,label"]
    for i, name in enumerate(NAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)).save(root / name)
        lines.append(f"{name},{4 + i},{6},{30 + i},{28},obj")
    (tmp_path / "boxes.csv").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "boxes.csv"


def test_scores_equal_the_audit_of_the_same_tensors(folder, tmp_path):
    root, csv = folder
    model = SmallConvNet().eval()
    before = model_snapshot(model)
    summary = evaluate(
        model,
        model.block1,
        root,
        "gradcam,layercam",
        output_dir=tmp_path / "out",
        **{**OPTIONS, "annotations": csv, "worst": 6, "class_names": ["<i>k0"] * 5},
    )
    assert_same_model(before, model_snapshot(model))
    assert (summary.total, summary.scored, summary.failed) == (6, 6, 0)
    document = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    names = find_images(root)
    samples = FolderSamples(
        [str(root / n) for n in names],
        image_size=(32, 32),
        cam_size=None,
        mean=MEAN,
        std=STD,
        overlay=False,
        thumbnail=False,
    )
    boxes = read_box_csv(csv)
    explainers = {
        "gradcam": cam_explainer(model, "gradcam", model.block1),
        "layercam": cam_explainer(model, "layercam", model.block1),
        **{b: baseline_explainer(b, mean=MEAN, std=STD, seed=1810) for b in ("random", "centre", "edges")},
    }
    for start in (0, 4):  # the run's batches
        group = [samples[i] for i in range(start, min(start + 4, 6))]
        masks = [boxes.find(names[s.index]).masks((32, 32), image_size=s.cam_size) for s in group]
        audit = audit_batch(
            model,
            torch.stack([s.tensor for s in group]),
            explainers,
            masks=(torch.stack([m[0] for m in masks]), torch.stack([m[1] for m in masks])),
            steps=2,
            keys=[s.index for s in group],
        )
        for row, sample in enumerate(group):
            record = document["images"][sample.index]
            assert record["name"] == names[sample.index] and record["class"] == audit.classes[row]
            for name, scores in audit.scores.items():
                for metric, values in scores.items():
                    value = values[row].item()
                    stored = record["scores"][name][metric]
                    assert (stored is None) if np.isnan(value) else stored == pytest.approx(value, abs=2e-6)
    board = document["leaderboard"]
    assert set(board) == set(explainers)
    assert board["edges"]["randomisation_spearman"]["mean"] == 1.0
    assert "| gradcam |" in summary.leaderboard and "| edges (baseline) |" in summary.leaderboard
    page = (tmp_path / "out" / "report.html").read_text()
    assert "x&lt;b&gt;&amp;.png" in page and "x<b>&.png" not in page
    assert "&lt;i&gt;k0" in page and "<i>k0" not in page  # the per-class table
    assert "&lt;i&gt;k0" in page and "<i>k0" not in page  # the per-class table
    assert page.count("<svg") >= 2 and "data:image/png;base64," in page


def test_resume_skips_done_images_and_refuses_other_settings(folder, tmp_path):
    root, _ = folder
    model = SmallConvNet().eval()
    out = tmp_path / "out"
    first = evaluate(model, model.block1, root, "gradcam", output_dir=out, **OPTIONS)
    document = (out / "evaluation.json").read_text()
    again = evaluate(model, model.block1, root, "gradcam", output_dir=out, **OPTIONS)
    assert (first.scored, again.scored, again.skipped) == (6, 0, 6)
    assert (out / "evaluation.json").read_text() == document
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    (out / "manifest.jsonl").write_text("\n".join(manifest[:5]) + "\n")  # the last image lost
    third = evaluate(model, model.block1, root, "gradcam", output_dir=out, **OPTIONS)
    assert (third.scored, third.skipped) == (2, 4)  # its batch: images 4 and 5
    assert (out / "evaluation.json").read_text() == document
    with pytest.raises(ConfigError, match="other settings: .*steps=2"):
        evaluate(model, model.block1, root, "gradcam", output_dir=out, **{**OPTIONS, "steps": 3})


def test_run_with_evaluate_and_several_layers(folder, tmp_path):
    root, csv = folder
    model = SmallConvNet().eval()
    layers = {"early": model.block1, "late": model.block2}
    options = {k: v for k, v in OPTIONS.items() if k not in ("annotations", "steps", "worst")}
    summary = run(
        model,
        layers,
        root,
        "gradcam",
        output_dir=tmp_path / "out",
        evaluate={"annotations": str(csv), "sanity": ["random_logit"], "worst": 0},
        **options,
    )
    board = json.loads((tmp_path / "out" / "evaluation.json").read_text())["leaderboard"]
    assert list(board) == ["gradcam@early", "gradcam@late", "random", "centre", "edges"]
    assert "randomisation_spearman" not in board["gradcam@early"] and "pointing_game" in board["gradcam@late"]
    assert (
        summary.scored == 6 and summary.report == tmp_path / "out" / "report.html"
    )  # run's html: the gallery's
    with pytest.raises(ConfigError, match="evaluate does not take save_overlay"):
        run(model, model.block1, root, output_dir=tmp_path / "o2", evaluate=True, save_overlay=True)


def test_bad_arguments(folder, tmp_path):
    root, _ = folder
    model = SmallConvNet().eval()
    with pytest.raises(ConfigError, match="nothing to score"):
        evaluate(model, model.block1, root, output_dir=tmp_path / "o", sanity=[])
    with pytest.raises(ConfigError, match="annotations"):
        evaluate(model, model.block1, root, output_dir=tmp_path / "o", annotations=tmp_path / "none.json")
    with pytest.raises(ConfigError, match="modules of model"):
        evaluate(model, torch.nn.Linear(2, 2), root, output_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="steps"):
        evaluate(model, model.block1, root, output_dir=tmp_path / "o", steps=0)
    with pytest.raises(ConfigError, match="tolerance"):
        evaluate(model, model.block1, root, output_dir=tmp_path / "o", tolerance=-1)
    with pytest.raises(ConfigError, match="iou_threshold"):
        evaluate(model, model.block1, root, output_dir=tmp_path / "o", iou_threshold=0)
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_progress_bar_when_asked(folder, tmp_path, capsys):
    root, _ = folder
    model = SmallConvNet().eval()
    evaluate(
        model, model.block1, root, output_dir=tmp_path / "o", **{**OPTIONS, "progress": True, "worst": 0}
    )
    assert "evaluate: 100%" in capsys.readouterr().err


def test_a_dataset_with_annotations_from_its_meta(tmp_path):
    from pytorch_grad_cam.metrics.annotations import Annotation

    generator = torch.Generator().manual_seed(0)
    items = [
        (torch.randn(3, 16, 16, generator=generator), {"box": [2, 2, 9 + i, 10] if i != 2 else None})
        for i in range(5)
    ]

    def annotation(meta):
        return None if meta["box"] is None else Annotation(torch.tensor([meta["box"]], dtype=torch.float64))

    model = SmallConvNet().eval()
    evaluate(
        model,
        model.block1,
        items,
        "gradcam",
        output_dir=tmp_path / "out",
        annotations=annotation,
        sanity=[],
        baselines=False,
        num_workers=0,
        batch_size=2,
        progress=False,
        html=False,
    )
    document = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert [image["name"] for image in document["images"]] == ["0", "1", "2", "3", "4"]
    assert document["images"][2]["scores"]["gradcam"]["relevance_mass"] is None  # no object
    assert document["leaderboard"]["gradcam"]["relevance_mass"]["count"] == 4
    x = torch.stack([item[0] for item in items[:2]])
    maps = cam_explainer(model, "gradcam", model.block1)(model, x, model(x).argmax(1).tolist())
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[2:10, 2:9] = True  # item 0's box (2, 2, 9, 10), the tensor's own size
    expected = (maps[0] * mask).sum() / maps[0].sum()
    assert document["images"][0]["scores"]["gradcam"]["relevance_mass"] == pytest.approx(
        expected.item(), abs=2e-6
    )
    assert (tmp_path / "out" / "report.html").exists() is False
