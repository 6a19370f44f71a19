"""This process's shard as the run goes: each computed batch's records appended to it, and counted."""

from __future__ import annotations

import time
from typing import IO, Any, Iterable, List, Tuple

from pytorch_grad_cam.batch.detection import BoxesResult
from pytorch_grad_cam.batch.segmentation import ClassesResult
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.batch.writer import Writer, record_line

#: One computed batch: its ``(sample, result)`` pairs, the seconds of its CAMs and of its data.
Batch = Tuple[List[Tuple[Sample, Any]], float, float]


def record_batches(
    work: Iterable[Batch], writer: Writer, shard_file: IO[str], bar: Any | None
) -> dict[str, float]:
    """Write each batch's files, append its records to ``shard_file`` (flushed per batch), count it.

    Args:
        work: the computed batches, as they come.
        writer: writes each image's files and makes its record.
        shard_file: this process's shard, open for appending.
        bar: a tqdm progress bar, advanced by each batch's images, or None.

    Returns:
        the counts: images ``written`` and ``failed``, the written images' box or class ``maps``,
        and the seconds spent waiting for ``data``, in the CAMs (``cam``) and writing (``write``).
    """
    counts = {"written": 0, "failed": 0, "maps": 0, "data": 0.0, "cam": 0.0, "write": 0.0}
    for batch, cam_seconds, data_seconds in work:
        tick = time.perf_counter()
        lines = [record_line(writer.record(sample, result)) for sample, result in batch]
        shard_file.write("".join(lines))
        shard_file.flush()
        counts["write"] += time.perf_counter() - tick
        counts["cam"] += cam_seconds
        counts["data"] += data_seconds
        for sample, result in batch:
            counts["failed" if sample.error is not None else "written"] += 1
            if sample.error is None and isinstance(result, (BoxesResult, ClassesResult)):
                counts["maps"] += int(result.cams.shape[0])  # not those of an image the writer refused
        if bar is not None:
            bar.update(len(batch))
    return counts
