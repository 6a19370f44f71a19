"""What the box and class commands (``--task detection``, ``--task segmentation``) share: usage
errors in one line, the check of ``--method`` against the methods a task takes, and the run's exit
status."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Callable, Sequence, TextIO

from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.registry import METHODS


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage error is a :class:`~pytorch_grad_cam.errors.UsageError`
    (printed as one line by the command) instead of argparse's two lines and exit."""

    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see --help)")


def task_method(text: str, allowed: Sequence[str], explains: str) -> str:
    """``--method``'s registry key when the task takes it, else a UsageError: a method of the
    registry the task does not take names ``allowed``; an unknown one, the closest of them.

    Args:
        text: the option as given.
        allowed: the registry keys of the methods the task takes.
        explains: what the task explains, for the message (``"detector boxes"``).
    """
    key = text.strip().lower()
    if key in allowed:
        return key
    known = ", ".join(allowed)
    if key in METHODS:
        raise UsageError(f"--method {text} does not explain {explains} here; use one of {known}")
    close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"--method {text}: unknown method; {hint}choose one of {known}")


def run_task(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, TextIO], object],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and ``run`` the command; returns the exit status:
    0 (``--help`` too), 1 when the method fails on the model, 2 after a usage error (each a line
    on stderr)."""
    try:
        try:
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        except SystemExit as exit_request:  # --help
            return int(exit_request.code or 0)
        run(args, sys.stdout)
    except UsageError as error:
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, RuntimeError) as error:  # the method failed on this model
        print(
            f"{parser.prog}: failed: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr
        )
        return 1
    return 0
