"""How the commands show a library warning: one line on stderr, ``prog: warning: message``.

Python's own format adds the file path, the line number and the source line of the call; a command's
user needs the message only. Installed by the command entries (:func:`pytorch_grad_cam.cli.console.main`,
:func:`pytorch_grad_cam.cli.photo.main`) for the length of the command, never by the library.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator, TextIO


def warning_line(prog: str, message: Warning | str) -> str:
    """``prog: warning: message``, the message's whitespace (newlines too) folded into one line."""
    return f"{prog}: warning: {' '.join(str(message).split())}\n"


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Show every warning raised inside the block as :func:`warning_line` on stderr (filters unchanged)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        (file or sys.stderr).write(warning_line(prog, message))

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
