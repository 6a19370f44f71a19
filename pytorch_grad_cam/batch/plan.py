"""The plan of a run and resuming: the image list, the settings check, and the batches still to do.

A batch (``batch_size`` images in input order) is the unit of work: it is skipped on a re-run only
when every one of its images is complete, so every process computes exactly the batches a
one-process run would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from pytorch_grad_cam.batch.detection import entries_complete
from pytorch_grad_cam.batch.files import find_images, real_folder, stale_temporaries, whole_file, write_text
from pytorch_grad_cam.batch.lock import OutputLock
from pytorch_grad_cam.batch.manifest import (
    MANIFEST_NAME,
    SETTINGS_NAME,
    SHARD_DIR,
    merge_manifest,
    output_paths,
)
from pytorch_grad_cam.batch.world import World
from pytorch_grad_cam.errors import ConfigError


def check_settings(output_dir: Path, settings: dict, resume: bool) -> None:
    path = output_dir / SETTINGS_NAME
    if resume and path.exists():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = None
        if isinstance(earlier, dict) and earlier != settings:
            changed = ", ".join(
                f"{key}={earlier.get(key)!r} (now {settings.get(key)!r})"
                for key in {**settings, **earlier}  # a setting only one of the runs has, too
                if earlier.get(key) != settings.get(key)
            )
            raise ConfigError(
                f"output_dir {output_dir} holds a run made with other settings: {changed}; use another "
                "output_dir, or resume=False (--no-resume) to recompute everything"
            )
    write_text(path, json.dumps(settings, indent=1) + "\n")


def is_complete(record: dict | None, output_dir: Path, paths: dict[str, str | None], method: str) -> bool:
    """Whether an image needs no work: a bad file already recorded, or every wanted file whole."""
    if record is None or record.get("method") != method:
        return False
    if record.get("status") != "ok":
        return True
    if record.get("task") in ("detection", "segmentation"):  # each box's or class's files
        return entries_complete(record, output_dir, overlay=paths.get("overlay") is not None)
    return all(
        record.get(key) == path and whole_file(output_dir / path) for key, path in paths.items() if path
    )


def make_plan(
    world: World,
    *,
    image_dir: Path | None,
    dataset: Any,
    output_dir: Path,
    settings: dict,
    batch_size: int,
    method_name: str,
    overlay: bool,
    thumbnail: bool,
    resume: bool,
    complete: Callable[[dict | None], bool] | None = None,
) -> tuple[list[str], list[int], OutputLock | None]:
    """Process 0: take the folder's lock, list the images, prepare the folder, find the pending batches.

    Every process gets the names and the pending batches; process 0 also the lock, which it holds
    until the run ends (:meth:`OutputLock.release`). ``complete(record)``, when given, says whether an
    image's record needs no work (instead of :func:`is_complete`'s check of the CAM files).

    Raises:
        ConfigError: the folder cannot be made or written (one line: the path and the reason), it is
            in use by another run, or it holds a run made with other settings.
    """
    plan: tuple[str, Any, Any] = ("ok", None, None)
    lock = None
    if world.rank == 0:
        try:
            try:
                output_dir.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise ConfigError(f"output_dir {output_dir}: not a folder (a file is in the way)") from None
            lock = OutputLock(output_dir).acquire()
            for stale in stale_temporaries(output_dir):  # what killed runs left half-written
                stale.unlink()
            if image_dir is not None:
                names = find_images(image_dir, exclude=output_dir)
            else:
                width = len(str(max(len(dataset) - 1, 0)))
                names = [f"{index:0{width}d}" for index in range(len(dataset))]
            check_settings(output_dir, settings, resume)
            if not resume:
                real_folder(output_dir / SHARD_DIR)  # a planted link goes: nothing is removed through it
                for stale in [output_dir / MANIFEST_NAME, *(output_dir / SHARD_DIR).glob("*.jsonl")]:
                    if stale.exists() or stale.is_symlink():
                        stale.unlink()
            records = {record["name"]: record for record in merge_manifest(output_dir, names)}
            batches = math.ceil(len(names) / batch_size)
            pending = []
            for batch in range(batches):
                members = names[batch * batch_size : (batch + 1) * batch_size]
                if not all(
                    complete(records.get(name))
                    if complete is not None
                    else is_complete(
                        records.get(name),
                        output_dir,
                        output_paths(name, overlay=overlay, thumbnail=thumbnail),
                        method_name,
                    )
                    for name in members
                ):
                    pending.append(batch)
            real_folder(output_dir / SHARD_DIR)
            plan = ("ok", names, pending)
        except (ConfigError, OSError) as error:
            if lock is not None:
                lock.release()
                lock = None
            message = str(error) if isinstance(error, ConfigError) else describe_os_error(error, output_dir)
            plan = ("error", message, None)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
    plan = world.broadcast(plan)
    if plan[0] == "error":
        raise ConfigError(plan[1])
    return plan[1], plan[2], lock


def describe_os_error(error: OSError, output_dir: Path) -> str:
    """A filesystem failure as one line naming the output folder, the file and the reason."""
    where = f" ({error.filename})" if error.filename else ""
    return f"output_dir {output_dir}: {error.strerror or error}{where}"
