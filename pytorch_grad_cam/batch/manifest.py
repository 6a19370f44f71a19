"""The output folder's layout and its manifest: the files of each image, the shards, and merging them.

Each process appends its records to its own shard under :data:`SHARD_DIR`; process 0 merges the
shards into :data:`MANIFEST_NAME` (one record per image, input order, the latest record winning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pytorch_grad_cam.batch.files import read_jsonl, write_text

MANIFEST_NAME = "manifest.jsonl"
SETTINGS_NAME = "run.json"
#: Where each process appends its manifest records until process 0 merges them.
SHARD_DIR = ".manifest-shards"
THUMBNAIL_DIR = "thumbnails"


def output_paths(name: str, *, overlay: bool, thumbnail: bool) -> dict[str, str | None]:
    """The files of image ``name``, relative to the output folder."""
    return {
        "cam": f"{name}.npy",
        "overlay": f"{name}.overlay.jpg" if overlay else None,
        "thumbnail": f"{THUMBNAIL_DIR}/{name}.jpg" if thumbnail else None,
        "overlay_thumbnail": f"{THUMBNAIL_DIR}/{name}.overlay.jpg" if thumbnail else None,
    }


def merge_manifest(output_dir: Path, names: Sequence[str]) -> list[dict]:
    """Merge ``manifest.jsonl`` and the shards (a shard's record wins) into ``manifest.jsonl``.

    The result holds the records of ``names`` only, in that order, one each; the shards are
    removed. Returns the records.
    """
    manifest = output_dir / MANIFEST_NAME
    shard_dir = output_dir / SHARD_DIR
    own = shard_dir.is_dir() and not shard_dir.is_symlink()  # never read or remove through a link
    shards = sorted(shard_dir.glob("*.jsonl")) if own else []
    latest: dict[str, tuple[dict, str]] = {}
    for path in [manifest, *shards]:
        for record, line in read_jsonl(path):
            latest[str(record.get("name"))] = (record, line)
    kept = [latest[name] for name in names if name in latest]
    write_text(manifest, "".join(line + "\n" for _, line in kept))
    for shard in shards:
        shard.unlink()
    if own and not any(shard_dir.iterdir()):
        shard_dir.rmdir()
    return [record for record, _ in kept]
