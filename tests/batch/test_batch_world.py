"""pytorch_grad_cam.batch.world: two torchrun CPU processes give the files of one process."""

from __future__ import annotations

import sys

import batch_helpers as H


def test_torchrun_two_cpu_processes_give_the_same_files_and_one_merged_manifest(photos, single_run, tmp_path):
    reference, _ = single_run
    output = tmp_path / "cams"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = H.run_cli([*H.command(photos, output), "--num-workers", "1"], launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("40 images: 35 CAMs written, 0 already done, 5 bad files;") == 1  # rank 0 only
    assert "on 2 processes" in result.stdout
    assert H.tree(output) == H.tree(reference)  # CAMs, overlays, thumbnails, gallery, manifest: byte for byte
