"""The output folder's lock: one run at a time writes into a folder (under torchrun, process 0 holds it).

The lock is an advisory ``flock`` on ``<output_dir>/.lock``, a file holding the holder's pid, host and
start time. The operating system drops the lock when its process ends, however it ends, so a run
killed with SIGKILL never blocks the next one: the next run takes the lock and notes (a warning) the
run that ended without releasing it. A released lock leaves the file empty.

Where ``fcntl`` is missing (Windows) no lock is taken and a warning says so.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import warnings
from pathlib import Path
from types import TracebackType

from pytorch_grad_cam.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: The lock file, in the output folder (hidden: never taken for an image).
LOCK_NAME = ".lock"


def _holder(text: str) -> dict | None:
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "a run that left no details"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


def _open_own(path: Path) -> int:
    """Open (or make) the lock file itself: a link planted under its name is removed, never followed."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError:
        if not path.is_symlink():
            raise
        path.unlink()
        return os.open(path, flags, 0o644)


class OutputLock:
    """The exclusive lock of one output folder, as a context manager (or :meth:`acquire`/:meth:`release`).

    Args:
        output_dir: the folder (it must exist).

    Raises:
        ConfigError: (from :meth:`acquire`) another live run holds the folder; the one-line message
            names it (pid, host, start time).
    """

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.path = Path(output_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`ConfigError` naming the run that holds it."""
        if fcntl is None:
            warnings.warn(
                "no lock on the output folder on this platform: do not start two runs into one folder",
                stacklevel=2,
            )
            return self
        fd = _open_own(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise ConfigError(
                f"output_dir {self.path.parent} is in use by another run ({_describe(holder)}); wait for it "
                "to end, or write into another folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            earlier = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            if earlier.strip():
                warnings.warn(
                    f"{self.path.parent}: recovered the lock of a run that ended without releasing it "
                    f"({_describe(_holder(earlier))})",
                    stacklevel=2,
                )
            me = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        except BaseException:
            os.close(fd)  # closing drops the lock
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the lock file and drop the lock (the file stays: removing it would race a new taker)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
