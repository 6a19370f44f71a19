"""The command line's attention methods (legrad, attentionrollout, gradientrollout, attentiongradcam):
no target layer and no reshape needed on a ViT, a one-line skip on a CNN under ``--method all``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytorch_grad_cam.attention.legrad import LeGrad
from pytorch_grad_cam.cli import photo as cli
from pytorch_grad_cam.cli.methods import is_attention_method
from pytorch_grad_cam.cli.photo import (
    explain,
    load_model,
    load_photo,
    main,
    photo_array,
    to_input_tensor,
    torchvision_family,
)
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = str(ROOT / "examples" / "chelsea.png")
VIT = f"{ROOT / 'tests' / 'cli_vit_models.py'}:tiny_torchvision_vit"
CNN = f"{ROOT / 'tests' / 'cli_vit_models.py'}:tiny_cnn"
ATTENTION = ["legrad", "attentionrollout", "gradientrollout", "attentiongradcam"]


def _run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_attention_methods_are_the_four_registered_ones():
    assert [name for name in METHODS if is_attention_method(name)] == ATTENTION


@pytest.mark.parametrize("method", ATTENTION)
def test_each_attention_method_runs_on_a_vit_without_target_layer(capsys, tmp_path, method):
    code, out, err = _run(
        capsys, "--image-path", CHELSEA, "--model", VIT, "--method", method, "--output-dir", str(tmp_path)
    )
    assert code == 0 and err == "", err
    assert "attention methods on every block" in out
    assert re.search(rf"^{method}: \d+\.\d s$", out, flags=re.M)
    for suffix in ("cam", "gb", "cam_gb"):
        image = np.asarray(Image.open(tmp_path / f"{method}_{suffix}.jpg"))
        assert image.shape == (224, 337, 3)


def test_explain_gives_the_methods_own_map():
    """The command's map of legrad is LeGrad's own, with every block and the asked class."""
    loaded = load_model(VIT)
    x = to_input_tensor(photo_array(load_photo(CHELSEA), (224, 224)), loaded.mean, loaded.std)
    got = explain(loaded.model, None, x, 3, ["legrad"])["legrad"]
    want = LeGrad(loaded.model)(input_tensor=x, targets=[ClassifierOutputTarget(3)])[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    other = LeGrad(loaded.model)(input_tensor=x, targets=[ClassifierOutputTarget(1)])[0]
    assert np.abs(got - other).max() > 1e-3  # the class changes the map: the comparison can fail
    last = explain(loaded.model, None, x, 3, ["legrad"], attention_layers=[loaded.model.encoder.layers[-1]])
    block = LeGrad(loaded.model, [loaded.model.encoder.layers[-1]])(x, [ClassifierOutputTarget(3)])[0]
    np.testing.assert_allclose(last["legrad"], block, atol=1e-6)
    assert np.abs(last["legrad"] - got).max() > 1e-3


def test_target_layer_picks_the_legrad_block(capsys, tmp_path):
    code, out, err = _run(
        capsys,
        *("--image-path", CHELSEA, "--model", VIT, "--method", "legrad"),
        *("--target-layer", "encoder.layers.-1", "--output-dir", str(tmp_path)),
    )
    assert code == 0 and err == "", err
    assert "target layer encoder.layers.encoder_layer_1 (EncoderBlock)" in out


def test_method_all_on_a_cnn_skips_them_with_one_line_and_runs_them_on_a_vit(capsys, tmp_path, monkeypatch):
    methods = {name: METHODS[name] for name in ("gradcam", *ATTENTION)}
    monkeypatch.setattr(cli, "METHODS", methods)
    code, out, err = _run(
        capsys,
        *("--image-path", CHELSEA, "--model", CNN, "--target-layer", "1"),
        *("--method", "all", "--output-dir", str(tmp_path / "cnn")),
    )
    assert code == 0 and err == "", err
    skipped = dict(re.findall(r"^skipped (\S+): (.*)$", out, flags=re.M))
    assert sorted(skipped) == sorted(ATTENTION)
    assert all(reason.startswith("needs a vision transformer (") for reason in skipped.values()), skipped
    assert "the model computed no attention" in skipped["attentionrollout"]
    assert (tmp_path / "cnn" / "gradcam_cam.jpg").is_file()
    # a torchvision ViT as cam.py loads one by name (its default layer and reshape), built small
    vit = load_model(VIT)
    family = torchvision_family("vit_b_16")
    loaded = dataclasses.replace(
        vit, name="vit", target_layer=family.target_layer, reshape_transform=family.reshape_transform
    )
    monkeypatch.setattr(cli, "load_model", lambda name, weights: loaded)
    code, out, err = _run(
        capsys, "--image-path", CHELSEA, "--method", "all", "--output-dir", str(tmp_path / "vit")
    )
    assert code == 0 and err == "", err
    assert "skipped" not in out and "target layer encoder.layers.encoder_layer_1.ln_1 (LayerNorm)" in out
    for name in methods:
        assert re.search(rf"^{name}: \d+\.\d s$", out, flags=re.M)
        assert (tmp_path / "vit" / f"{name}_cam.jpg").is_file()


def test_a_single_attention_method_on_a_cnn_is_a_one_line_usage_error(capsys):
    code, out, err = _run(capsys, "--image-path", CHELSEA, "--model", CNN, "--method", "legrad")
    assert code == 2 and err.count("\n") == 1
    assert "--method legrad on layer every attention block: needs a vision transformer (LeGrad" in err
