"""The tutorials under docs/tutorials run and write their pictures; the committed pictures are the ones
their full runs recorded; each tutorial has its page, which shows its pictures."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
PICTURES = TUTORIALS / "img"
RECORD = json.loads((PICTURES / "pictures.json").read_text(encoding="utf-8"))
#: The scripts (helpers such as shapes.py and pictures.py have no ``__main__`` block).
SCRIPTS = sorted(
    path.stem
    for path in TUTORIALS.glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")
)
sys.path.insert(0, str(TUTORIALS))
from pictures import fingerprint  # noqa: E402


def test_the_tutorials_are_the_use_cases():
    assert SCRIPTS == ["classifier", "datasets", "detection", "embeddings", "metrics", "segmentation", "vit"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_tutorial_runs_and_writes_its_pictures(name, tmp_path, monkeypatch, capsys):
    """``python docs/tutorials/<name>.py --quick --out DIR``, run in this process: it writes the
    files the full run recorded, under the same names, and they are not blank."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--quick", "--out", str(tmp_path)])
    try:
        runpy.run_path(str(TUTORIALS / f"{name}.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    written = json.loads((tmp_path / "pictures.json").read_text(encoding="utf-8"))
    expected = sorted(file for file, entry in RECORD.items() if entry["tutorial"] == name)
    assert expected and sorted(written) == expected
    for file, entry in written.items():
        assert entry == {"tutorial": name, "quick": True, "pixels_sha256": fingerprint(tmp_path / file)}
        if file.endswith(".md"):
            assert (tmp_path / file).read_text(encoding="utf-8").count("\n|") >= 3
        else:
            assert np.asarray(Image.open(tmp_path / file)).std() > 20, f"{file} is blank"
    assert "wrote " in capsys.readouterr().out


def test_committed_pictures_are_what_the_full_runs_recorded():
    """Every file in docs/tutorials/img is in the record, from a full run (not --quick), with the
    pixels the run wrote; a picture stays under 150 KB."""
    files = sorted(path.name for path in PICTURES.iterdir() if path.name != "pictures.json")
    assert files == sorted(RECORD)
    for file, entry in RECORD.items():
        assert entry["tutorial"] in SCRIPTS and entry["quick"] is False, file
        assert fingerprint(PICTURES / file) == entry["pixels_sha256"], (
            f"{file} is not what its run recorded: python docs/tutorials/{entry['tutorial']}.py"
        )
        assert (PICTURES / file).stat().st_size < 150_000, file


def test_each_tutorial_has_a_page_that_runs_it_and_shows_its_pictures():
    for name in SCRIPTS:
        page = (TUTORIALS / f"{name}.md").read_text(encoding="utf-8")
        assert f"```bash\npython docs/tutorials/{name}.py\n```" in page, name
        assert f'--8<-- "docs/tutorials/{name}.py"' in page, name  # the script itself, on its page
        shown = set(re.findall(r"\]\(img/([^)]+)\)", page)) | set(
            re.findall(r'--8<-- "docs/tutorials/img/([^"]+)"', page)
        )
        assert shown == {file for file, entry in RECORD.items() if entry["tutorial"] == name}, name
    index = (TUTORIALS / "index.md").read_text(encoding="utf-8")
    assert all(f"]({name}.md)" in index for name in SCRIPTS)
