"""The command line's loop over methods (pytorch_grad_cam.cli.methods): the CPU budget of ``--method
all``, its labels, pictures written as each method ends, and Ctrl-C in one line."""

from __future__ import annotations

import io
import re
from typing import ClassVar

import numpy as np
import pytest
import torch

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.cli import photo as cli
from pytorch_grad_cam.cli.methods import (
    Interrupted,
    budget_label,
    budget_options,
    estimated_cost,
    run_methods,
    time_line,
)
from pytorch_grad_cam.registry import METHODS, MethodInfo
from pytorch_grad_cam.sscam import SSCAM

FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )
"""


class SampledCAM(GradCAM):
    """GradCAM standing in for a costly sampled method: records its ``num_samples``
    (https://arxiv.org/abs/1610.02391)."""

    seen: ClassVar[list[int]] = []

    def __init__(self, model, target_layers=None, reshape_transform=None, *, num_samples=35):
        super().__init__(model, target_layers, reshape_transform=reshape_transform)
        SampledCAM.seen.append(num_samples)


class InterruptedCAM(GradCAM):
    """A method during which the user presses Ctrl-C (https://arxiv.org/abs/1610.02391)."""

    def get_cam_weights(self, *args):
        raise KeyboardInterrupt


@pytest.fixture
def tiny_command(tmp_path, monkeypatch, capsys):
    """Run cam.py on a tiny seeded factory model (no ImageNet model: a fraction of a second)."""
    (tmp_path / "tiny.py").write_text(FACTORY, encoding="utf-8")
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photo)

    def run(methods, *extra):
        monkeypatch.setattr(cli, "METHODS", methods)  # the command's view; the registry is untouched
        monkeypatch.setattr(SampledCAM, "seen", [])
        argv = ["--image-path", str(photo), "--model", f"{tmp_path / 'tiny.py'}:build"]
        argv += ["--target-layer", "2", "--method", "all", "--output-dir", str(tmp_path / "out"), *extra]
        code = cli.main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err, tmp_path / "out"

    return run


def _methods(**planted):
    methods = {"gradcam": METHODS["gradcam"], "eigencam": METHODS["eigencam"]}
    for name, cls in planted.items():
        methods[name] = MethodInfo(name, cls, "t", "[t](http://t)")
    return methods


def test_method_all_on_the_cpu_runs_sscam_with_the_budget_and_says_so(tiny_command):
    code, out, err, folder = tiny_command(_methods(sscam=SampledCAM))
    assert code == 0, err
    assert SampledCAM.seen == [2]
    line = re.search(r"^sscam: \d+\.\d s (.*)$", out, flags=re.M).group(1)
    assert line == "(2 of 35 samples: a budget on the CPU; --full runs it in full)"
    assert re.search(r"^gradcam: \d+\.\d s$", out, flags=re.M)  # no budget, no note
    assert re.search(r"^methods took \d+\.\d s \(\d+ forward passes of the model, \d+ ms each\): ", out, re.M)
    assert (folder / "sscam_cam.jpg").is_file() and (folder / "cam_grid.jpg").is_file()


def test_full_runs_the_method_as_defined(tiny_command):
    code, out, err, _ = tiny_command(_methods(sscam=SampledCAM), "--full")
    assert code == 0, err
    assert SampledCAM.seen == [35]  # its own default, nothing passed
    assert re.search(r"^sscam: \d+\.\d s$", out, flags=re.M)


def test_the_grid_labels_name_the_budget(tiny_command, monkeypatch):
    labels = []
    real = cli.make_grid
    monkeypatch.setattr(cli, "make_grid", lambda tiles, names: labels.extend(names) or real(tiles, names))
    code, _, err, _ = tiny_command(_methods(sscam=SampledCAM))
    assert code == 0, err
    assert re.fullmatch(r"class \d \(\d\)", labels[0])  # the photo: the class explained
    assert labels[1:] == ["gradcam", "eigencam", "sscam (2 of 35 samples)"]


def test_ctrl_c_keeps_the_finished_methods_pictures_and_ends_in_one_line(tiny_command):
    methods = _methods(stuck=InterruptedCAM)
    methods["after"] = METHODS["gradcam++"]
    code, out, err, folder = tiny_command(methods)
    assert code == 130
    assert err.splitlines() == [
        "pytorch-grad-cam: interrupted during stuck: 2 of 4 methods ended, 2 with their pictures written"
    ]
    for name in ("gradcam", "eigencam"):  # written as each ended, before the interrupt
        for suffix in ("cam", "gb", "cam_gb"):
            assert (folder / f"{name}_{suffix}.jpg").is_file()
    assert not (folder / "gradcam++_cam.jpg").exists() and not (folder / "cam_grid.jpg").exists()
    assert "Traceback" not in err + out


def test_budget_only_under_method_all_on_a_cpu_without_full():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert budget_options("sscam", cpu, True, False) == {"num_samples": 2}
    assert budget_options("iscam", cpu, True, False) == {"num_samples": 2}
    assert budget_options("sscam", cpu, False, False) == {}  # asked for by name: as defined
    assert budget_options("sscam", cpu, True, True) == {}
    assert budget_options("sscam", cuda, True, False) == {}
    assert budget_options("gradcam", cpu, True, False) == {}
    assert budget_label(SSCAM, {"num_samples": 2}) == "2 of 35 samples"
    assert budget_label(SSCAM, {}) == ""


def test_estimated_cost_follows_channels_and_samples():
    assert estimated_cost("scorecam", 320, {}, METHODS["scorecam"].cls) == 32.0
    assert estimated_cost("sscam", 320, {}, SSCAM) == 32.0 * 35
    assert estimated_cost("sscam", 320, {"num_samples": 2}, SSCAM) == 64.0
    assert estimated_cost("gradcam", 320, {}, GradCAM) == 1.2


def test_run_methods_interrupt_raises_interrupted_after_writing():
    written = []

    def compute(name, options):
        if name == "b":
            raise KeyboardInterrupt
        return np.zeros((2, 2), dtype=np.float32)

    with pytest.raises(Interrupted, match="interrupted during b: 1 of 3 methods ended"):
        run_methods(
            ["a", "b", "c"],
            {"a": GradCAM, "b": GradCAM, "c": GradCAM},
            compute,
            lambda name, cam: written.append(name),
            device=torch.device("cpu"),
            channels=4,
            every_method=True,
            full=False,
            layer_name="x",
            out=io.StringIO(),
        )
    assert written == ["a"]


def test_time_line_names_the_big_methods():
    line = time_line({"a": 1.0, "b": 8.0, "c": 0.2, "d": 0.1}, 10.0, 0.5)
    assert line == (
        "methods took 10.0 s (20 forward passes of the model, 500 ms each): b 8.0 s, a 1.0 s, "
        "the other 2 methods 1.0 s"
    )
