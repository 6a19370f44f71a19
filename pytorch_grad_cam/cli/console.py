"""The console command (``python cam.py``, ``pytorch-grad-cam``): one photo, or a folder with ``--image-dir``.

``--task detection`` goes to the detector command (:func:`pytorch_grad_cam.cli.detection.main`,
one CAM per predicted box), or with ``--image-dir`` to the dataset runner's detection task;
``--task segmentation`` likewise to the segmenter command
(:func:`pytorch_grad_cam.cli.segmentation.main`, one CAM per predicted class) or the runner's
segmentation task.
Otherwise a command line with ``--image-dir`` goes to the dataset runner
(:func:`pytorch_grad_cam.cli.dataset.main`, one process or one per rank under ``torchrun``); every other
one to the single-photo command (:func:`pytorch_grad_cam.cli.photo.main`). The commands do not
import each other: this module is the only place that knows them all.
"""

from __future__ import annotations

import sys
from typing import Sequence

from pytorch_grad_cam.cli import dataset, detection, photo, segmentation
from pytorch_grad_cam.cli.warning_lines import one_line_warnings


def wants_dataset_runner(arguments: Sequence[str]) -> bool:
    """Whether a command line is the dataset runner's (it names ``--image-dir``)."""
    return any(a == "--image-dir" or a.startswith("--image-dir=") for a in arguments)


def split_task(arguments: Sequence[str]) -> tuple[str, list[str]]:
    """``--task NAME`` (or ``--task=NAME``) and the other arguments; default ``classification``."""
    rest: list[str] = []
    task = "classification"
    items = iter(arguments)
    for item in items:
        if item == "--task":
            task = next(items, "")
        elif item.startswith("--task="):
            task = item[len("--task=") :]
        else:
            rest.append(item)
    return task.strip().lower(), rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 after a usage error).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    with one_line_warnings(photo.program_name()):  # the library's warnings: one line each, no source line
        return _dispatch(list(sys.argv[1:] if argv is None else argv))


def _dispatch(arguments: list[str]) -> int:
    task, arguments = split_task(arguments)
    commands = {"detection": detection.main, "segmentation": segmentation.main}
    if task in commands and wants_dataset_runner(arguments):  # every box or class of every image
        return dataset.main(["--task", task, *arguments], prog=photo.program_name())
    if task in commands:
        return commands[task](arguments, prog=photo.program_name())
    if task != "classification":
        message = f"--task {task}: choose classification (the default), detection or segmentation"
        sys.stderr.write(f"{photo.program_name()}: error: {message}\n")
        return 2
    if wants_dataset_runner(arguments):
        return dataset.main(arguments, prog=photo.program_name())
    return photo.main(arguments)


if __name__ == "__main__":
    sys.exit(main())
