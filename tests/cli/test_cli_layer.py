"""pytorch_grad_cam.cli.layer and cam.py's target layer: optional for every --model (a family's
default path, else the layer search), ``--target-layer auto``, the one line it prints, timm:NAME."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import batch_helpers as H
import numpy as np
import pytest
import torch
from PIL import Image

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.cli.layer import choose_target_layer, is_auto
from pytorch_grad_cam.cli.photo import (
    DEFAULT_MODEL,
    load_model,
    load_photo,
    main,
    photo_array,
    to_input_tensor,
)
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

CHELSEA = str(Path(__file__).resolve().parents[2] / "examples" / "chelsea.png")
FACTORY = f"{H.MODELS}:tiny_cnn"


def _x(loaded):
    rgb = photo_array(load_photo(CHELSEA), (loaded.input_size, loaded.input_size))
    return to_input_tensor(rgb, loaded.mean, loaded.std)


def _run(capsys, tmp_path, *extra):
    code = main(["--image-path", CHELSEA, "--output-dir", str(tmp_path), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_a_factory_with_no_target_layer_runs_on_the_searched_layer_and_prints_why(capsys, tmp_path):
    loaded = load_model(FACTORY)
    assert loaded.target_layer is None  # factories have no default path
    choice = find_target_layer(loaded.model, _x(loaded))
    assert choice.name == "features.3"  # the last ReLU: the map before the mean pool
    out = _run(capsys, tmp_path, "--model", FACTORY)
    lines = out.splitlines()
    assert lines[0] == f"model {FACTORY}, target layer features.3 (ReLU), device cpu"
    assert lines[1] == choice.reason  # the library's one line, verbatim
    assert (tmp_path / "gradcam_cam.jpg").is_file()


def test_target_layer_auto_is_the_omitted_form(capsys, tmp_path):
    omitted = _run(capsys, tmp_path / "omitted", "--model", FACTORY)
    auto = _run(capsys, tmp_path / "auto", "--model", FACTORY, "--target-layer", "auto")

    def same(out):  # all but the folder and the times
        return re.sub(r"\d+\.\d+ s\b", "T s", out)

    assert same(auto.replace(str(tmp_path / "auto"), str(tmp_path / "omitted"))) == same(omitted)
    for name in ("gradcam_cam.jpg", "gradcam_cam_gb.jpg"):
        a = np.asarray(Image.open(tmp_path / "auto" / name))
        b = np.asarray(Image.open(tmp_path / "omitted" / name))
        assert np.array_equal(a, b)
    assert is_auto(None) and is_auto(" AUTO ") and not is_auto("features.3")


def test_a_users_path_wins_over_the_search(capsys, tmp_path):
    out = _run(capsys, tmp_path, "--model", FACTORY, "--target-layer", "features.1")
    assert out.splitlines()[1] == "target layer features.1 (ReLU): --target-layer"


def test_the_default_model_keeps_its_path_and_auto_gives_the_same_map():
    loaded = load_model(DEFAULT_MODEL)
    x = _x(loaded)
    default = choose_target_layer(loaded, None, x)
    assert default.name == "_blocks.15"
    assert default.reason == (
        "target layer _blocks.15 (MBConvBlock): the default of --model efficientnet_lite0 "
        "(--target-layer auto searches for one)"
    )
    auto = choose_target_layer(loaded, "auto", x)
    assert auto.name == "_blocks.15._bn2" and auto.reason == find_target_layer(loaded.model, x).reason
    # the last block has no skip connection: its output is its last BatchNorm's, the same map
    targets = [ClassifierOutputTarget(281)]
    maps = [GradCAM(loaded.model, [c.layer])(x, targets=targets) for c in (default, auto)]
    assert maps[0].max() == pytest.approx(1.0) and np.allclose(maps[0], maps[1], atol=1e-6)


def test_a_model_the_search_cannot_explain_is_a_usage_error(tmp_path):
    file = tmp_path / "mlp.py"
    file.write_text(
        "from torch import nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 4))\n"
    )
    loaded = load_model(f"{file}:make")
    with pytest.raises(UsageError, match=r"no target layer found automatically .*; pass --target-layer PATH"):
        choose_target_layer(loaded, None, torch.zeros(1, 3, 224, 224))


def test_timm_vit_runs_with_no_target_layer(capsys, tmp_path):
    out = _run(capsys, tmp_path, "--model", "timm:vit_tiny_patch16_224")
    loaded = load_model("timm:vit_tiny_patch16_224")  # seeded: the same random weights
    assert (loaded.input_size, loaded.mean, loaded.std) == (224, (0.5,) * 3, (0.5,) * 3)
    choice = find_target_layer(loaded.model, _x(loaded))
    assert choice.name == "blocks.11.norm1" and choice.layout.prefix == 1
    lines = out.splitlines()
    assert lines[0] == "model timm:vit_tiny_patch16_224, target layer blocks.11.norm1 (LayerNorm), device cpu"
    assert lines[1] == choice.reason
    assert (tmp_path / "gradcam_cam.jpg").is_file()


def test_timm_input_size_and_normalisation_come_from_the_models_config():
    vit = load_model("timm:vit_tiny_patch16_384")
    assert (vit.input_size, vit.mean) == (384, (0.5, 0.5, 0.5))
    resnet = load_model("timm:resnet18")
    assert (resnet.input_size, resnet.mean, resnet.std) == (224, IMAGENET_MEAN, IMAGENET_STD)
    assert resnet.categories is not None and len(resnet.categories) == 1000


def test_timm_mistakes_are_one_line(capsys, monkeypatch):
    assert main(["--image-path", CHELSEA, "--model", "timm:vit_tiny_patch_224"]) == 2
    err = capsys.readouterr().err
    assert "timm has no model 'vit_tiny_patch_224'; did you mean vit_tiny_patch16_224" in err
    assert err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    assert main(["--image-path", CHELSEA, "--model", "timm:vit_tiny_patch16_224"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(
        "--model timm:vit_tiny_patch16_224 needs timm, which is not installed here: pip install timm\n"
    )
    assert err.count("\n") == 1
