"""The ``stacklevel`` of the library's warnings: the first frame outside this package (the user's line)."""

from __future__ import annotations

import os
import sys

#: This package's folder: the frames in it are the library's own.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_level() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the function that calls this: that of the first
    frame outside this package, the code that called the CAM, however many library frames lie
    between (``aug_smooth``'s views, ``compute`` inside ``__call__``, SmoothGrad-CAM++'s noisy copies,
    several inputs, SESS calling a CAM)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
