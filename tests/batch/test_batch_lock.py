"""pytorch_grad_cam.batch.lock: one run at a time in an output folder; a stale lock is recovered."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import batch_helpers as H
import numpy as np
import pytest
from PIL import Image

from pytorch_grad_cam.batch.lock import LOCK_NAME, OutputLock
from pytorch_grad_cam.errors import ConfigError


def test_a_second_lock_on_the_folder_is_refused_naming_the_first(tmp_path):
    with OutputLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(ConfigError) as refused:
            OutputLock(tmp_path).acquire()
        message = str(refused.value)
        assert f"is in use by another run (pid {os.getpid()} on {socket.gethostname()}, since " in message
        assert "\n" not in message
    with OutputLock(tmp_path):  # released: free again, no note
        pass


def test_a_stale_lock_is_recovered_with_a_note(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)  # a process that has exited
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "elsewhere", "started": "then"}))
    with pytest.warns(
        UserWarning, match=f"recovered the lock of a run that ended without releasing it .pid {pid}"
    ), OutputLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def _photos(root, count=12):
    rng = np.random.default_rng(5)
    root.mkdir()
    for index in range(count):
        Image.fromarray(H.random_picture(rng)).save(root / f"{index:02d}.png")
    return root


def _start(arguments, **extra):
    return subprocess.Popen(
        [sys.executable, str(H.ROOT / "cam.py"), *arguments],
        cwd=H.ROOT,
        env=H.environment(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_run_into_a_busy_folder_is_refused_and_a_killed_runs_lock_is_recovered(tmp_path):
    photos = _photos(tmp_path / "photos")
    output = tmp_path / "cams"
    marker = tmp_path / "stalled"
    arguments = [
        *H.command(photos, output, model="stalling_cnn", layer="inner.features"),
        "--num-workers",
        "0",
    ]
    first = _start(arguments, BATCH_TEST_STALL_AFTER="1", BATCH_TEST_STALL_MARKER=str(marker))
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never reached its second batch"
            time.sleep(0.05)
        second = H.run_cli(arguments)
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"is in use by another run (pid {first.pid} on {socket.gethostname()}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    third = H.run_cli(arguments)
    assert third.returncode == 0, third.stderr
    assert f"recovered the lock of a run that ended without releasing it (pid {first.pid}" in third.stderr
    records = H.manifest(output)
    assert [record["name"] for record in records] == [f"{i:02d}.png" for i in range(12)]
    assert not (output / LOCK_NAME).read_text()  # released: the lock file is left empty


def test_two_runs_started_at_once_many_times_lose_nothing(tmp_path):
    """The race is timing-dependent: five rounds of two real processes on one folder. Each ends with 0
    or refuses with the lock's one line; every image has exactly one record and every .npy loads."""
    photos = _photos(tmp_path / "photos")
    names = [f"{i:02d}.png" for i in range(12)]
    for round_ in range(5):
        output = tmp_path / f"cams{round_ % 2}"  # fresh folders and folders of an earlier round
        arguments = [*H.command(photos, output), "--num-workers", "0", "--no-resume"]
        processes = [_start(arguments) for _ in range(2)]
        results = [(process.wait(timeout=120), *process.communicate()) for process in processes]
        assert any(code == 0 for code, _, _ in results), results
        for code, _, err in results:
            assert code == 0 or (code == 2 and "is in use by another run" in err and err.count("\n") == 1), (
                err
            )
        records = H.manifest(output)
        assert [record["name"] for record in records] == names, round_
        for record in records:
            assert np.load(output / record["cam"]).shape == tuple(record["cam_size"])
        assert not list(output.rglob("*.tmp"))
