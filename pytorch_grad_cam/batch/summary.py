"""What a dataset run reports: :class:`BatchSummary`, its counts and its one-line summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path


def _count(number: int, noun: str) -> str:
    """``1 CAM``, ``2 CAMs``, ``0 CAMs``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


@dataclasses.dataclass
class BatchSummary:
    """What a :func:`run` did (counts over all processes).

    Attributes:
        total: images in the input.
        written: images whose CAMs this run computed and wrote.
        failed: bad files (recorded in the manifest with the reason): met by this run, or recorded by
            an earlier one in a batch this run skipped.
        skipped: good images of batches that were already complete (from an earlier run).
        seconds: wall time of the run (the slowest process).
        data_seconds: time the processes waited for the DataLoader (summed over processes).
        cam_seconds: time in the model and the CAM computation (summed).
        write_seconds: time resizing, colouring and writing files (summed).
        manifest: the manifest's path.
        pages: the gallery pages (with ``html``).
        world_size: the number of processes.
        rank: this process's rank (0 without torchrun).
        box_maps: with ``task="detection"``, the box maps this run wrote (one per explained box);
            None otherwise.
        class_maps: with ``task="segmentation"``, the class maps this run wrote (one per explained
            class of each image); None otherwise.
        earlier_bad: of ``failed``, those an earlier run recorded (not processed by this run).
    """

    total: int
    written: int
    failed: int
    skipped: int
    seconds: float
    data_seconds: float
    cam_seconds: float
    write_seconds: float
    manifest: Path
    pages: list[Path]
    world_size: int
    rank: int = 0
    box_maps: int | None = None
    earlier_bad: int = 0
    class_maps: int | None = None

    @property
    def images_per_second(self) -> float:
        """Images processed (written or failed) by this run per second of wall time."""
        processed = self.written + self.failed - self.earlier_bad
        return processed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the command prints."""
        busy = self.data_seconds + self.cam_seconds + self.write_seconds
        shares = ""
        if busy > 0:
            shares = (
                f" (waiting for data {self.data_seconds / busy:.0%}, CAMs {self.cam_seconds / busy:.0%}, "
                f"writing {self.write_seconds / busy:.0%})"
            )
        processes = f" on {self.world_size} processes" if self.world_size > 1 else ""
        written = _count(self.written, "CAM")
        if self.box_maps is not None:
            written = f"{_count(self.box_maps, 'box CAM')} for {_count(self.written, 'image')}"
        if self.class_maps is not None:
            written = f"{_count(self.class_maps, 'class CAM')} for {_count(self.written, 'image')}"
        return (
            f"{_count(self.total, 'image')}: {written} written, {self.skipped} already "
            f"done, {_count(self.failed, 'bad file')}; {self.seconds:.1f} s{processes}, "
            f"{self.images_per_second:.1f} images/s{shares}; manifest: {self.manifest}"
        )
