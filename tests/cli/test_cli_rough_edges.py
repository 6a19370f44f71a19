"""The commands as a newcomer meets them: a method that does not apply is skipped, warnings are one
line, random weights are named, ``--help`` shows every entry, detector pictures go into a folder with
readable labels, and a pickled ``--weights`` file is refused without advice to load it unsafely."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pytorch_grad_cam.cli import console, dataset, detection, photo
from pytorch_grad_cam.cli.methods import explain, run_methods
from pytorch_grad_cam.cli.models import read_state_dict
from pytorch_grad_cam.errors import NotApplicableError, UsageError
from pytorch_grad_cam.fullgrad_cam import FullGrad
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.drawing import draw_box
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = str(ROOT / "examples" / "chelsea.png")

#: A factory model whose forward warns (as the library's diagnostics do) with a two-line message.
WARNING_MODEL = """
import warnings
import torch
from torch import nn


class Warns(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=8)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        warnings.warn("blank map (image 0): a test warning\\nwith a second line", UserWarning)
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def model():
    return Warns()
"""


def test_fullgrad_with_a_reshape_does_not_apply_and_method_all_skips_it_with_the_reason(capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(2))
    with pytest.raises(NotApplicableError, match="FullGrad does not take a reshape_transform"):
        FullGrad(model, reshape_transform=vit_reshape_transform)

    def compute(name, options):
        return explain(model, model[0], torch.randn(1, 3, 8, 8), 0, [name], reshape_transform=lambda t: t)[
            name
        ]

    done = run_methods(
        ["fullgrad"],
        {"fullgrad": METHODS["fullgrad"].cls},
        compute,
        lambda name, cam: None,
        device=torch.device("cpu"),
        channels=4,
        every_method=True,
        full=False,
        layer_name="0",
        out=sys.stdout,
    )
    out, err = capsys.readouterr()
    assert done.failed == [] and "skipped fullgrad: FullGrad does not take a reshape_transform" in out
    assert "failed" not in err


def test_library_warnings_reach_the_command_line_as_one_clean_line(tmp_path, capsys):
    (tmp_path / "warns.py").write_text(WARNING_MODEL)
    before = warnings.showwarning
    arguments = [
        "--image-path",
        CHELSEA,
        "--model",
        f"{tmp_path / 'warns.py'}:model",
        "--target-layer",
        "conv",
    ]
    assert console.main([*arguments, "--output-dir", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") >= 1
    for line in err.splitlines():
        if "warning" in line:
            assert line.endswith("warning: blank map (image 0): a test warning with a second line")
            assert ".py:" not in line
    assert "warnings.warn(" not in err  # no source line
    assert warnings.showwarning is before  # the command's formatter lived for the command only


def test_the_library_installs_no_warnings_formatter():
    before = warnings.showwarning
    for name in (
        "pytorch_grad_cam",
        "pytorch_grad_cam.cli.photo",
        "pytorch_grad_cam.batch",
        "pytorch_grad_cam.cli.console",
    ):
        importlib.import_module(name)
        assert warnings.showwarning is before, name


def test_a_timm_model_without_weights_says_once_that_its_weights_are_random(tmp_path, capsys):
    pytest.importorskip("timm")
    arguments = ["--image-path", CHELSEA, "--model", "timm:test_resnet", "--output-dir", str(tmp_path)]
    assert photo.main(arguments, prog="x") == 0
    err = capsys.readouterr().err
    note = (
        "x: note: timm:test_resnet has random weights (pretrained weights are not downloaded; pass --weights"
    )
    assert err.count(note) == 1 and err.count("random weights") == 1
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(Path(CHELSEA).read_bytes())
    arguments = [
        "--image-dir",
        str(photos),
        "--output-dir",
        str(tmp_path / "cams"),
        "--model",
        "timm:test_resnet",
    ]
    assert dataset.main([*arguments, "--num-workers", "0"], prog="x") == 0
    assert capsys.readouterr().err.count("random weights") == 1


def test_a_timm_model_with_weights_has_no_note(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "w.pt")
    arguments = ["--image-path", CHELSEA, "--model", "timm:test_resnet", "--weights", str(tmp_path / "w.pt")]
    assert photo.main([*arguments, "--output-dir", str(tmp_path)], prog="x") == 0
    assert "random weights" not in capsys.readouterr().err


def test_the_help_usage_line_names_image_dir_and_task(capsys):
    usage = photo.build_parser("pytorch-grad-cam").format_usage()
    assert "--image-dir" in usage and "--task" in usage and "--image-path" in usage
    assert console.main(["--help"]) == 0
    first = capsys.readouterr().out.split("\n\n")[0]
    assert "--image-dir" in first and "--task" in first


def test_cli_main_alone_refuses_task_detection_with_one_line(capsys):
    assert photo.main(["--image-path", CHELSEA, "--task", "detection"], prog="x") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--task detection belongs to" in err


def _label_gap(text: str) -> int:
    """The widest run of text-free columns inside a drawn label (white text on black)."""
    picture = draw_box(np.zeros((40, 200, 3), dtype=np.uint8), [5, 20, 190, 39], text)
    columns = np.flatnonzero((picture[8:19, 5:] > 200).all(axis=2).any(axis=0))
    return int((np.diff(columns) - 1).max())


def test_a_box_label_shows_the_space_between_name_and_score():
    assert _label_gap("elephant 0.03") >= _label_gap("elephant0.03") + 3


def _load_example(name: str):
    path = ROOT / "usage_examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_detection_example_writes_into_its_output_folder_not_the_current_one(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torchvision")
    monkeypatch.chdir(tmp_path)
    example = _load_example("detection_example")
    arguments = ["--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--image-size", "64", "--max-boxes", "1"]
    written = example.main(["--image-path", CHELSEA, *arguments])
    assert written and all(path.parent == Path("detection_example_output") for path in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detection_example_output"]


class _Code:
    """A pickle that runs code when unpickled (it would create ``path``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_a_pickled_weights_file_is_refused_without_advice_to_load_it_unsafely(tmp_path, capsys):
    evil, ran = tmp_path / "evil.pt", tmp_path / "ran"
    torch.save({"weight": _Code(ran)}, evil)
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)
    for path, names in ((evil, "posix.mkdir"), (whole, "torch.nn.modules.linear.Linear")):
        with pytest.raises(UsageError) as caught:
            read_state_dict(str(path))
        message = str(caught.value)
        assert "refused" in message and names in message and "state_dict()" in message
        assert "weights_only" not in message and "trust" not in message
    assert not ran.exists()
    arguments = ["--image-path", CHELSEA, "--model", "fasterrcnn_mobilenet_v3_large_320_fpn"]
    code = detection.main([*arguments, "--weights", str(evil), "--output-dir", str(tmp_path)], prog="x")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "refused" in err and "weights_only" not in err
    assert not ran.exists()
    for name in ("detection_example", "faster_rcnn_example", "segmentation_example"):
        with pytest.raises(SystemExit) as exit_info:
            _load_example(name).main(["--image-path", CHELSEA, "--weights", str(evil)])
        assert "refused" in str(exit_info.value.code) and "weights_only" not in str(exit_info.value.code)
        assert not ran.exists()
