"""The console command (``python cam.py``, ``pytorch-grad-cam``): one photo, or a folder with ``--image-dir``.

A command line with ``--image-dir`` goes to the dataset runner (:func:`pytorch_grad_cam.batch.main`,
one process or one per rank under ``torchrun``); every other one to the single-photo command
(:func:`pytorch_grad_cam.cli.main`). The two commands do not import each other: this module is the
only place that knows both.
"""

from __future__ import annotations

import sys
from typing import Sequence

from pytorch_grad_cam import batch, cli


def wants_dataset_runner(arguments: Sequence[str]) -> bool:
    """Whether a command line is the dataset runner's (it names ``--image-dir``)."""
    return any(a == "--image-dir" or a.startswith("--image-dir=") for a in arguments)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 after a usage error).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if wants_dataset_runner(arguments):
        return batch.main(arguments, prog=cli.program_name())
    return cli.main(arguments)


if __name__ == "__main__":
    sys.exit(main())
