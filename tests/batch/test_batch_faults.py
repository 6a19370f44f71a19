"""The dataset runner under faults mid-run: killed writes, full disks, bad images, planted links, odd names.

Each test holds the same promises: nothing half-written is ever taken as done, the other images
finish, a bad image is recorded with its reason, nothing is written or removed outside the output
folder, every manifest line is JSON, and the gallery escapes every name.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from html import escape as html_escape
from pathlib import Path

import batch_helpers as H
import batch_models
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch import files as files_module
from pytorch_grad_cam.batch import runner as runner_module
from pytorch_grad_cam.batch.files import whole_file
from pytorch_grad_cam.cli import dataset

#: The saved maps are float16 in [0, 1]: neighbouring values near 1 are 2**-10 apart, so two maps of
#: one image computed in different batches (float32 sums in another order) may differ by one step.
FLOAT16_STEP = 2.0**-10


def _folder(root: Path, names: list[str]) -> Path:
    rng = np.random.default_rng(5)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(H.random_picture(rng)).save(path, format="PNG")
    return root


def _arguments(photos: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--image-dir",
        str(photos),
        "--output-dir",
        str(output),
        "--model",
        f"{H.MODELS}:tiny_cnn",
        "--target-layer",
        "features",
        "--batch-size",
        "4",
        "--image-size",
        "32",
        "--num-workers",
        "0",
        *extra,
    ]


def _strict(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def _lines_are_json(output: Path) -> list[dict]:
    """The manifest's records, each line strict JSON (no NaN or Infinity) holding an object."""
    lines = (output / B.MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line, parse_constant=_strict) for line in lines]
    assert all(isinstance(record, dict) for record in records)
    return records


class _Poisoned(torch.nn.Module):
    """:func:`tiny_cnn` that raises on an image whose first pixel is 77 and returns NaN for 88."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = batch_models.tiny_cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0, 0, 0] == 77).any()):
            raise RuntimeError("poisoned pixel")
        out = self.inner(x)
        return torch.where((x[:, 0, 0, 0] == 88)[:, None], torch.full_like(out, float("nan")), out)


class _Images(Dataset):
    def __init__(self, poison: dict[int, float]) -> None:
        self.poison = poison

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        x = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(index))
        if index in self.poison:
            x[0, 0, 0] = self.poison[index]
        return x, {"id": index}


def test_an_image_that_makes_the_model_raise_or_return_nan_is_recorded_and_the_others_finish(tmp_path):
    model = _Poisoned()
    layers = [model.inner.features]
    summary = B.run(
        model, layers, _Images({2: 77.0, 5: 88.0}), output_dir=tmp_path / "bad", num_workers=0, batch_size=4
    )
    assert (summary.written, summary.failed) == (6, 2)
    records = _lines_are_json(tmp_path / "bad")
    reasons = {int(record["name"]): record.get("error") for record in records if record["status"] != "ok"}
    assert sorted(reasons) == [2, 5]
    assert reasons[2] == "the model or the CAM failed on this image: RuntimeError: poisoned pixel"
    assert reasons[5].startswith("the model or the CAM failed on this image: ValueError: the model's output")
    assert "NaN or inf" in reasons[5]
    # the other images' maps are those of a run without the bad ones (batch invariance)
    B.run(model, layers, _Images({}), output_dir=tmp_path / "clean", num_workers=0, batch_size=4)
    for index in (0, 1, 3, 4, 6, 7):
        ours = np.load(tmp_path / "bad" / f"{index}.npy").astype(np.float32)
        clean = np.load(tmp_path / "clean" / f"{index}.npy").astype(np.float32)
        assert ours.max() == 1.0 and np.abs(ours - clean).max() <= FLOAT16_STEP
    # a resumed run leaves the recorded bad images as they are and counts them as bad
    again = B.run(
        model, layers, _Images({2: 77.0, 5: 88.0}), output_dir=tmp_path / "bad", num_workers=0, batch_size=4
    )
    assert (again.written, again.skipped, again.failed) == (0, 6, 2)


def test_a_resumed_run_counts_the_bad_files_of_its_manifest_as_bad(photos, single_run, tmp_path, capsys):
    output = tmp_path / "cams"
    arguments = [*H.command(photos, output), "--num-workers", "0"]
    assert dataset.main(arguments, prog="x") == 0
    assert "40 images: 35 CAMs written, 0 already done, 5 bad files" in capsys.readouterr().out
    assert dataset.main(arguments, prog="x") == 0
    assert "40 images: 0 CAMs written, 35 already done, 5 bad files" in capsys.readouterr().out


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_ends_the_run_with_one_line_and_a_rerun_resumes(photos, tmp_path, capsys):
    output = tmp_path / "cams"
    marker = tmp_path / "stalled"
    arguments = H.command(photos, output, model="stalling_cnn", layer="inner.features")
    process = subprocess.Popen(
        [sys.executable, str(H.ROOT / "cam.py"), *arguments, "--num-workers", "2"],
        cwd=H.ROOT,
        env=H.environment(BATCH_TEST_STALL_AFTER="3", BATCH_TEST_STALL_MARKER=str(marker)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches the DataLoader workers too
        # a terminal's Ctrl-C: SIGINT as Python handles it by default, even where this test runs in a
        # background job of a shell without job control (whose children inherit SIGINT ignored)
        preexec_fn=_default_sigint,
    )
    try:
        while not marker.exists():
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and out == ""
    assert err == "cam.py: interrupted; the finished images are kept: run the same command again to resume\n"
    assert len(list(output.rglob("*.npy"))) == 12  # the three batches before the stall
    assert dataset.main([*arguments, "--num-workers", "0"], prog="x") == 0
    assert "23 CAMs written, 12 already done, 5 bad files" in capsys.readouterr().out


@pytest.mark.parametrize(("what", "count"), [("npy", 3), ("jpg", 2), ("jpg", 7), ("shard", 2)])
def test_killed_in_the_middle_of_a_write_a_rerun_ends_with_the_files_of_an_uninterrupted_run(
    tmp_path, what, count
):
    photos = _folder(tmp_path / "photos", [f"{i}.png" for i in range(10)])
    reference = tmp_path / "reference"
    assert dataset.main(_arguments(photos, reference, "--save-overlay", "--html"), prog="x") == 0
    output = tmp_path / "cams"
    arguments = _arguments(photos, output, "--save-overlay", "--html")
    killed = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "batch_killer.py"), what, str(count), *arguments],
        cwd=H.ROOT,
        env=H.environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert dataset.main(arguments, prog="x") == 0
    assert [record["name"] for record in _lines_are_json(output)] == [f"{i}.png" for i in range(10)]
    assert H.tree(output) == H.tree(reference)


def test_a_truncated_or_linked_output_file_is_not_taken_as_done(tmp_path, capsys):
    photos = _folder(tmp_path / "photos", [f"{i}.png" for i in range(8)])
    output = tmp_path / "cams"
    arguments = _arguments(photos, output, "--save-overlay")
    assert dataset.main(arguments, prog="x") == 0
    whole = H.tree(output)
    cam = output / "1.png.npy"
    cam.write_bytes(cam.read_bytes()[:-7])  # as a disk that lost its last block would leave it
    overlay = output / "6.png.overlay.jpg"
    overlay.write_bytes(overlay.read_bytes()[:-100])
    assert not whole_file(cam) and not whole_file(overlay)
    outside = tmp_path / "outside.npy"
    outside.write_bytes(whole["2.png.npy"])
    (output / "2.png.npy").unlink()
    (output / "2.png.npy").symlink_to(outside)
    capsys.readouterr()
    assert dataset.main(arguments, prog="x") == 0
    assert "8 images: 8 CAMs written, 0 already done" in capsys.readouterr().out  # both batches redone
    assert H.tree(output) == whole and not (output / "2.png.npy").is_symlink()
    assert outside.read_bytes() == whole["2.png.npy"]


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: file bytes, or where a link points."""
    entries: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        entries[key] = (
            f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
        )
    return entries


def test_nothing_is_written_or_removed_outside_the_output_folder_through_planted_links(tmp_path):
    photos = _folder(tmp_path / "photos", [f"{i}.png" for i in range(5)] + ["sub/a.png", "sub/b.png"])
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("keep.jsonl", "rank-00000.jsonl", "notes.txt", "page.html", "lock"):
        (outside / name).write_text(f"{name}: not the runner's\n")
    output = tmp_path / "cams"
    output.mkdir()
    plants = {
        "sub": outside,
        B.SHARD_DIR: outside,
        ".lock": outside / "lock",
        B.MANIFEST_NAME: outside / "keep.jsonl",
        B.SETTINGS_NAME: outside / "notes.txt",
        "index.html": outside / "page.html",
        "index-2.html": outside / "notes.txt",
        "0.png.npy": outside / "notes.txt",
        "1.png.overlay.jpg": outside / "notes.txt",
    }
    for name, target in plants.items():
        (output / name).symlink_to(target)
    before = _snapshot(outside)
    for resume in ("", "--no-resume", ""):
        arguments = _arguments(photos, output, "--save-overlay", "--html", *([resume] if resume else []))
        assert dataset.main(arguments, prog="x") == 0
        assert _snapshot(outside) == before
        records = _lines_are_json(output)
        assert [r["name"] for r in records] == [f"{i}.png" for i in range(5)] + ["sub/a.png", "sub/b.png"]
        assert all(r["status"] == "ok" for r in records[:5])
        for record in records[5:]:
            assert (
                record["status"] == "error"
                and "sub is a symbolic link out of the output folder" in record["error"]
            )
        assert all(whole_file(output / r["cam"]) for r in records[:5])
    # a link in the thumbnails' place: no image is written through it, none half-written elsewhere
    other = tmp_path / "other"
    other.mkdir()
    (other / "thumbnails").symlink_to(outside)
    assert dataset.main(_arguments(photos, other, "--html"), prog="x") == 0
    assert _snapshot(outside) == before
    assert all(
        r["status"] == "error" and "thumbnails is a symbolic link" in r["error"]
        for r in _lines_are_json(other)
    )
    assert not list(other.rglob("*.npy"))


def test_names_that_are_html_or_not_utf8_are_written_recorded_and_escaped(tmp_path):
    photos = tmp_path / "photos"
    names = ["<img src=x onerror=alert(1)>.png", "a&b\"c'.png", "x<script>/y.png"]
    _folder(photos, names)
    raw = os.fsencode(photos) + b"/caf\xe9-latin1.png"  # a name that is not UTF-8
    Image.fromarray(H.random_picture(np.random.default_rng(9))).save(os.fsdecode(raw), format="PNG")
    output = tmp_path / "cams"
    assert dataset.main(_arguments(photos, output, "--html", "--save-overlay"), prog="x") == 0
    records = _lines_are_json(output)
    assert all(record["status"] == "ok" for record in records) and len(records) == 4
    assert {record["name"] for record in records} == {*names, os.fsdecode(b"caf\xe9-latin1.png")}
    assert all(whole_file(output / record["cam"]) for record in records)
    page = (output / "index.html").read_text(encoding="utf-8")
    for dangerous in ("<img src=x", "<script>", 'a&b"', "onerror=alert(1)>"):
        assert dangerous not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page and "a&amp;b&quot;c&#x27;.png" in page
    assert 'href="caf%E9-latin1.png.overlay.jpg"' in page and "caf\ufffd-latin1.png" in page


def test_files_that_vanish_or_appear_during_the_run(tmp_path):
    photos = _folder(tmp_path / "photos", [f"{i}.png" for i in range(8)])
    output = tmp_path / "cams"
    model = _FolderChanger(photos)
    options = {"output_dir": output, "batch_size": 4, "num_workers": 0, "image_size": 32}
    summary = B.run(model, [model.inner.features], photos, **options)
    records = {r["name"]: r for r in _lines_are_json(output)}
    assert sorted(records) == [f"{i}.png" for i in range(8)]
    assert records["6.png"]["status"] == "error" and "the file is gone" in records["6.png"]["error"]
    assert (summary.written, summary.skipped, summary.failed) == (7, 0, 1)
    again = B.run(model, [model.inner.features], photos, **options)  # the folder as it now is
    assert [r["name"] for r in _lines_are_json(output)] == [
        *(f"{i}.png" for i in range(6)),
        "7.png",
        "new.png",
    ]
    assert (again.written, again.skipped, again.failed) == (4, 4, 0)


class _FolderChanger(torch.nn.Module):
    """:func:`tiny_cnn` whose first call (batch 1 of a run) removes ``6.png`` and adds ``new.png``."""

    def __init__(self, photos: Path) -> None:
        super().__init__()
        self.inner = batch_models.tiny_cnn()
        self.photos = photos
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            (self.photos / "6.png").unlink()
            _folder(self.photos, ["new.png"])
        return self.inner(x)


def _fail(code: int):
    raise OSError(code, os.strerror(code))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
@pytest.mark.parametrize("where", ["cam", "jpg", "shard", "manifest", "gallery"])
def test_a_full_disk_or_a_refused_write_mid_run_is_one_line_and_a_rerun_completes(
    tmp_path, capsys, monkeypatch, code, where
):
    photos = _folder(tmp_path / "photos", [f"{i}.png" for i in range(10)])
    reference = tmp_path / "reference"
    arguments = _arguments(photos, reference, "--save-overlay", "--html")
    assert dataset.main(arguments, prog="x") == 0
    output = tmp_path / "cams"
    arguments = _arguments(photos, output, "--save-overlay", "--html")
    atomic_write, append_only = files_module.atomic_write, runner_module.append_only
    seen = []

    def failing_write(path, write):
        kind = {".npy": "cam", ".jpg": "jpg", ".jsonl": "manifest", ".html": "gallery"}.get(path.suffix)
        seen.append(kind)
        if kind == where and seen.count(kind) == {"cam": 5, "jpg": 5, "manifest": 2, "gallery": 1}[kind]:
            atomic_write(path, lambda file: (file.write(b"half"), file.flush(), _fail(code)))
        atomic_write(path, write)

    def failing_append(path):
        file = append_only(path)
        write = file.write
        file.write = lambda text: (
            (write(text[:10]), file.flush(), _fail(code)) if where == "shard" else write(text)
        )
        return file

    monkeypatch.setattr(files_module, "atomic_write", failing_write)
    monkeypatch.setattr(runner_module, "append_only", failing_append)
    capsys.readouterr()
    assert dataset.main(arguments, prog="x") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"x: error: --output-dir {output}: {os.strerror(code)}")
    assert not [p for p in output.rglob("*") if p.name.endswith(".tmp")]
    assert all(whole_file(p) for p in output.rglob("*") if p.suffix in (".npy", ".jpg"))
    monkeypatch.undo()
    assert dataset.main(arguments, prog="x") == 0
    assert [record["name"] for record in _lines_are_json(output)] == [f"{i}.png" for i in range(10)]
    assert H.tree(output) == H.tree(reference)


class _OddMeta(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int):
        meta = [{"score": float("nan")}, {"inf": float("inf"), "name": "<b>bold</b>"}, "plain"][index]
        return torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(index)), meta


def test_meta_with_nan_or_inf_and_html_class_names_stay_strict_json_and_escaped(tmp_path):
    model = batch_models.tiny_cnn()
    names = ["<script>alert(1)</script>", "a&b", "c", "d", "e"]
    B.run(
        model, [model.features], _OddMeta(), output_dir=tmp_path, num_workers=0, html=True, class_names=names
    )
    records = _lines_are_json(tmp_path)
    assert [record["meta"] for record in records] == [
        "{'score': nan}",
        "{'inf': inf, 'name': '<b>bold</b>'}",
        "plain",
    ]
    page = (tmp_path / "index.html").read_text()
    assert "<script>" not in page and "<b>bold" not in page
    shown = {record["predicted_name"] for record in records}
    assert all(html_escape(name) in page for name in shown)


BROKEN_MODEL = """
import torch
from torch import nn


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        self.features(x)
        raise RuntimeError("the checkpoint and the code disagree")


def model():
    return Broken()
"""


def test_a_model_that_fails_on_every_image_is_one_line_and_status_1(tmp_path, capsys):
    photos = _folder(tmp_path / "photos", [f"{i}.png" for i in range(6)])
    (tmp_path / "broken.py").write_text(BROKEN_MODEL)
    arguments = _arguments(photos, tmp_path / "cams")
    arguments[arguments.index(f"{H.MODELS}:tiny_cnn")] = f"{tmp_path / 'broken.py'}:model"
    assert dataset.main(arguments, prog="x") == 1
    err = capsys.readouterr().err
    assert err == "x: error: RuntimeError: the checkpoint and the code disagree\n"


def test_a_file_where_an_output_folder_goes_fails_that_image_only(tmp_path):
    photos = _folder(tmp_path / "photos", ["a.png", "sub/b.png", "sub/c.png", "z.png"])
    output = tmp_path / "cams"
    output.mkdir()
    (output / "sub").write_text("a file of the user's, where the runner wants a folder")
    assert dataset.main(_arguments(photos, output), prog="x") == 0
    records = {record["name"]: record for record in _lines_are_json(output)}
    assert records["a.png"]["status"] == records["z.png"]["status"] == "ok"
    for name in ("sub/b.png", "sub/c.png"):
        assert (
            records[name]["status"] == "error"
            and "sub is a file where a folder goes" in records[name]["error"]
        )
    assert (output / "sub").read_text().startswith("a file of the user's")
