"""Progress bars for the methods that run many forward passes."""

from __future__ import annotations

import sys

import tqdm


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is an interactive terminal (False when it is missing or closed)."""
    stream = sys.stderr
    if stream is None:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def check_progress(progress: object) -> bool | None:
    """``True``, ``False`` or ``None`` (on when stderr is a terminal), or a clear error."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None; got {progress!r}")
    return progress


def progress_bar(total: int, description: str, progress: bool | None) -> tqdm.tqdm:
    """A tqdm bar of ``total`` steps on stderr, shown if ``progress`` (None: if stderr is a terminal)."""
    enabled = stderr_is_terminal() if progress is None else progress
    return tqdm.tqdm(total=total, desc=description, disable=not enabled, leave=False, file=sys.stderr)
