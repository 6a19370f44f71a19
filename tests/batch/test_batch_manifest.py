"""pytorch_grad_cam.batch.manifest: merging the manifest and the shards."""

from __future__ import annotations

import json

import pytest

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch.manifest import merge_manifest


def test_merge_keeps_the_latest_record_of_each_current_image_in_input_order(tmp_path):
    (tmp_path / B.SHARD_DIR).mkdir()
    (tmp_path / B.MANIFEST_NAME).write_text(
        '{"name": "a", "v": 1}\n{"name": "gone", "v": 1}\n{"name": "b", "v": 1}\n'
    )
    (tmp_path / B.SHARD_DIR / "rank-00001.jsonl").write_text(
        '{"name": "b", "v": 2}\n{"name": "c", "v": 2}\n{"na'
    )
    with pytest.warns(UserWarning, match="rank-00001.jsonl:3: not a JSON object"):
        merged = merge_manifest(tmp_path, ["c", "b", "a", "missing"])
    assert merged == [{"name": "c", "v": 2}, {"name": "b", "v": 2}, {"name": "a", "v": 1}]
    assert [json.loads(line) for line in (tmp_path / B.MANIFEST_NAME).read_text().splitlines()] == merged
    assert not (tmp_path / B.SHARD_DIR).exists()
