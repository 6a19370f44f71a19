"""The dataset runner's command, killed with SIGKILL in the middle of a write (tests/test_batch_faults.py).

Not a test module (pytest does not collect it). ``python tests/batch_killer.py WHAT N ARGS...`` runs
``pytorch_grad_cam.cli.dataset.main(ARGS)`` and, at the ``N``-th write of ``WHAT``, writes half of it and
kills its own process outright:

- ``npy`` / ``jpg``: the ``N``-th file of that suffix (half its bytes reach its temporary file);
- ``shard``: the ``N``-th append of manifest records (half the text reaches the shard).
"""

from __future__ import annotations

import io
import os
import signal
import sys

from pytorch_grad_cam.batch import files, runner
from pytorch_grad_cam.cli.dataset import main


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at(what: str, count: int) -> None:
    seen = [0]
    if what in ("npy", "jpg"):
        atomic_write = files.atomic_write

        def half_then_die(path, write):
            if path.suffix == f".{what}":
                seen[0] += 1
                if seen[0] == count:
                    buffer = io.BytesIO()
                    write(buffer)
                    data = buffer.getvalue()
                    atomic_write(
                        path, lambda file: (file.write(data[: len(data) // 2]), file.flush(), _die())
                    )
            atomic_write(path, write)

        files.atomic_write = half_then_die
    else:
        append_only = runner.append_only

        def dying_append(path):
            file = append_only(path)
            write = file.write

            def half(text):
                seen[0] += 1
                if seen[0] == count:
                    write(text[: len(text) // 2])
                    file.flush()
                    _die()
                return write(text)

            file.write = half
            return file

        runner.append_only = dying_append


if __name__ == "__main__":
    kill_at(sys.argv[1], int(sys.argv[2]))
    sys.exit(main(sys.argv[3:], prog="killed"))
