"""The end of a run: the processes' counts summed, the manifest merged, the gallery written, the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from pytorch_grad_cam.batch.detection import DetectionOptions
from pytorch_grad_cam.batch.gallery import write_gallery
from pytorch_grad_cam.batch.manifest import MANIFEST_NAME, merge_manifest
from pytorch_grad_cam.batch.segmentation import SegmentationOptions
from pytorch_grad_cam.batch.summary import BatchSummary
from pytorch_grad_cam.batch.world import World


def finish_run(
    world: World,
    counts: Mapping[str, float],
    elapsed: float,
    *,
    output_dir: Path,
    names: Sequence[str],
    pending: list[int],
    batch_size: int,
    gallery_title: str | None,
    per_page: int,
    task_options: DetectionOptions | SegmentationOptions | None,
) -> BatchSummary:
    """The run's summary, the same in every process (call it in every process).

    Process 0 merges the shards into the manifest and, with a ``gallery_title``, writes the gallery.

    Args:
        world: the processes of the run.
        counts: this process's ``written``, ``failed``, ``maps`` and seconds ``data``, ``cam``, ``write``.
        elapsed: this process's wall time, in seconds.
        output_dir: the run's output folder.
        names: every image's name, in the manifest's order.
        pending: the batches (indices of ``batch_size`` names) this run computed.
        batch_size: images per batch.
        gallery_title: the gallery pages' title; None for no gallery.
        per_page: images per gallery page.
        task_options: the detection or segmentation options, or None (classification).
    """
    keys = ("written", "failed", "maps", "data", "cam", "write")
    written, failed, maps, data_s, cam_s, write_s = world.reduce([counts[key] for key in keys], "sum")
    (elapsed,) = world.reduce([elapsed], "max")
    pages: list[Path] = []
    earlier_bad = 0  # bad files an earlier run recorded, in the batches this run skipped
    if world.rank == 0:
        records = merge_manifest(output_dir, names)
        if gallery_title is not None:
            pages = write_gallery(output_dir, records, per_page=per_page, title=gallery_title)
        earlier_bad = _earlier_bad(records, names, pending, batch_size)
    pages, earlier_bad = world.broadcast((pages, earlier_bad))
    computed = int(written) + int(failed)
    return BatchSummary(
        total=len(names),
        written=int(written),
        failed=int(failed) + earlier_bad,
        earlier_bad=earlier_bad,
        box_maps=int(maps) if isinstance(task_options, DetectionOptions) else None,
        class_maps=int(maps) if isinstance(task_options, SegmentationOptions) else None,
        skipped=len(names) - computed - earlier_bad,
        seconds=elapsed,
        data_seconds=data_s,
        cam_seconds=cam_s,
        write_seconds=write_s,
        manifest=output_dir / MANIFEST_NAME,
        pages=pages,
        world_size=world.size,
        rank=world.rank,
    )


def _earlier_bad(records: list[dict], names: Sequence[str], pending: list[int], batch_size: int) -> int:
    """How many images of the batches not in ``pending`` (skipped as complete) are recorded as bad."""
    redone = {name for b in pending for name in names[b * batch_size : (b + 1) * batch_size]}
    return sum(1 for record in records if record.get("status") != "ok" and record.get("name") not in redone)
