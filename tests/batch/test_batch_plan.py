"""pytorch_grad_cam.batch.plan: resuming a killed run, re-runs that skip complete batches, settings."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import batch_helpers as H
import batch_models
import numpy as np
import pytest
from PIL import Image

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch.manifest import merge_manifest
from pytorch_grad_cam.batch.plan import check_settings


def test_a_killed_run_restarted_completes_every_image_once(photos, single_run, tmp_path):
    reference, _ = single_run
    output = tmp_path / "cams"
    marker = tmp_path / "stalled"
    arguments = H.command(photos, output, model="stalling_cnn", layer="inner.features")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytorch_grad_cam.batch", *arguments, "--num-workers", "0"],
        cwd=H.ROOT,
        env=H.environment(BATCH_TEST_STALL_AFTER="3", BATCH_TEST_STALL_MARKER=str(marker)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached its fourth batch"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    shard = output / B.SHARD_DIR / "rank-00000.jsonl"
    lines = shard.read_text().splitlines()
    done = {json.loads(line)["name"] for line in lines}
    assert 0 < len(list(output.rglob("*.npy"))) < 35 and len(done) < 40
    # the process died between writing a batch's files and its records: drop the last record, and
    # leave a half-written temporary file where a pending image's CAM goes
    shard.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    pending = next(name for name in B.find_images(photos) if name not in done and name.startswith("img"))
    (output / f".{pending}.npy.tmp").write_bytes(b"\x93NUMPY half")

    with pytest.warns(UserWarning, match="not a JSON object"):
        merge_manifest(output, B.find_images(photos))  # what the restart does first, seen here
    result = H.run_cli([*arguments, "--num-workers", "1"])
    assert result.returncode == 0, result.stderr
    written = int(result.stdout.split(" CAMs written")[0].split()[-1])
    skipped = int(result.stdout.split(" already done")[0].split()[-1])
    assert skipped >= 2 * H.BATCH and written < 35
    records = H.manifest(output)
    assert [record["name"] for record in records] == B.find_images(photos)  # every image once, in order
    assert H.tree(output) == H.tree(reference)  # and nothing half-written or left over


def test_a_rerun_skips_complete_batches_and_redoes_only_incomplete_ones(tmp_path):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for i in range(10):
        (photos / "d").mkdir(parents=True, exist_ok=True)
        Image.fromarray(H.random_picture(rng)).save(photos / "d" / f"{i}.png")
    model = batch_models.tiny_cnn()
    options = dict(output_dir=tmp_path / "out", batch_size=4, num_workers=0, image_size=H.IMAGE_SIZE)
    first = B.run(model, [model.features], photos, "gradcam", **options)
    assert (first.total, first.written, first.skipped, first.failed) == (10, 10, 0, 0)
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*.npy")}
    again = B.run(model, [model.features], photos, "gradcam", **options)
    assert (again.written, again.skipped) == (0, 10)
    assert {path: path.stat().st_mtime_ns for path in before} == before
    (tmp_path / "out" / "d" / "5.png.npy").unlink()  # in the second batch (images 4-7)
    third = B.run(model, [model.features], photos, "gradcam", **options, save_overlay=False)
    assert (third.written, third.skipped) == (4, 6)
    assert len(H.manifest(tmp_path / "out")) == 10
    with_overlays = B.run(model, [model.features], photos, "gradcam", **options, save_overlay=True)
    assert with_overlays.written == 10  # a new output kind makes every batch incomplete
    assert len(list((tmp_path / "out").rglob("*.overlay.jpg"))) == 10


def test_a_rerun_with_other_settings_is_refused_unless_resume_is_false(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(H.random_picture(np.random.default_rng(0))).save(photos / "x.png")
    model = batch_models.tiny_cnn()
    options = dict(output_dir=tmp_path / "out", num_workers=0, image_size=H.IMAGE_SIZE)
    B.run(model, [model.features], photos, "gradcam", **options)
    with pytest.raises(B.ConfigError, match=r"method='gradcam' \(now 'eigencam'\)"):
        B.run(model, [model.features], photos, "eigencam", **options)
    summary = B.run(model, [model.features], photos, "eigencam", **options, resume=False)
    assert summary.written == 1
    (record,) = H.manifest(tmp_path / "out")
    assert record["method"] == "eigencam" and record["target"] is None and record["predicted"] is not None


def test_a_setting_only_the_earlier_run_had_is_named(tmp_path):
    # a segmentation run's folder resumed as a classification run: "task" and "min_area" are gone
    earlier = {"method": "gradcam", "task": "segmentation", "min_area": 0.01}
    check_settings(tmp_path, earlier, resume=True)
    with pytest.raises(B.ConfigError, match=r"other settings: task='segmentation' \(now None\), "):
        check_settings(tmp_path, {"method": "gradcam"}, resume=True)
    with pytest.raises(B.ConfigError, match=r"settings: method='gradcam' \(now 'eigencam'\); use another"):
        check_settings(tmp_path, {**earlier, "method": "eigencam"}, resume=True)
