"""The command line (pytorch_grad_cam.cli.photo, cam.py): the real offline model, outputs, and user errors."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.cli import console, dataset
from pytorch_grad_cam.cli import photo as cli
from pytorch_grad_cam.cli.photo import (
    DEFAULT_MODEL,
    GRID_NAME,
    explain,
    find_layer,
    load_model,
    load_photo,
    main,
    make_grid,
    parse_category,
    photo_array,
    to_input_tensor,
    torchvision_family,
)
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.registry import METHODS, MethodInfo

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = str(ROOT / "examples" / "chelsea.png")
CAT_AND_CUP = str(ROOT / "examples" / "cat_and_cup.png")
CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


@pytest.fixture(scope="module")
def lite0():
    return load_model(DEFAULT_MODEL)


def _input(loaded, path):
    rgb = photo_array(load_photo(path), (loaded.input_size, loaded.input_size))
    return rgb, to_input_tensor(rgb, loaded.mean, loaded.std)


# -- the real model --------------------------------------------------------------------------------


def test_real_model_sees_the_cat_and_gradcam_puts_its_mass_on_it(lite0):
    rgb, x = _input(lite0, CHELSEA)
    assert rgb.shape == (224, 224, 3)
    with torch.no_grad():
        top = int(lite0.model(x).argmax())
    assert 281 <= top <= 285, CATEGORIES[top]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    layer, name = find_layer(lite0.model, lite0.target_layer)
    assert name == "_blocks.15" and layer is lite0.model._blocks[-1]
    cam = explain(lite0.model, layer, x, top, ["gradcam"])["gradcam"]
    assert cam.shape == (224, 224)
    # The cat's face (ears to chin, eye to eye), set by hand on the photo as the model sees it (224 x 224).
    face = np.zeros(cam.shape, dtype=bool)
    face[20:200, 20:175] = True
    assert cam[face].mean() > 2 * cam[~face].mean()
    hot = cam > 0.8
    assert hot.sum() > 5000 and (hot & face).sum() >= 0.95 * hot.sum()
    assert cam[:, 195:].mean() < 0.35 * cam[face].mean()  # the background strip right of the cat


def test_class_discrimination_on_the_cat_and_cup_photo(lite0):
    _, x = _input(lite0, CAT_AND_CUP)
    layer, _ = find_layer(lite0.model, lite0.target_layer)
    half = x.shape[-1] // 2
    cat = explain(lite0.model, layer, x, parse_category("tiger cat", CATEGORIES, 1000), ["gradcam"])[
        "gradcam"
    ]
    cup = explain(lite0.model, layer, x, parse_category("espresso", CATEGORIES, 1000), ["gradcam"])["gradcam"]
    assert cat[:, :half].mean() > 4 * cat[:, half:].mean()
    assert cup[:, half:].mean() > 3 * cup[:, :half].mean()


# -- the command ----------------------------------------------------------------------------------


def _run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_method_writes_three_images_and_prints_top5_and_paths(capsys, tmp_path):
    code, out, err = _run(
        capsys, "--image-path", CHELSEA, "--method", "GradCAM", "--output-dir", str(tmp_path)
    )
    assert code == 0 and err == ""
    lines = out.splitlines()
    start = lines.index("top-5 classes:")
    top5 = lines[start + 1 : start + 6]
    assert top5[0].startswith("  1. Egyptian cat (285): ") and top5[0].endswith("%")
    assert [line.split(". ")[0].strip() for line in top5] == ["1", "2", "3", "4", "5"]
    assert "explaining Egyptian cat (285)" in lines
    expected = [tmp_path / f"gradcam_{suffix}.jpg" for suffix in ("cam", "gb", "cam_gb")]
    assert lines[-3:] == [f"  {path}" for path in expected]
    images = [np.asarray(Image.open(path)) for path in expected]
    for image in images:
        assert image.shape == (224, 337, 3) and image.std() > 5  # not a blank picture
    assert not np.array_equal(images[1], images[2])  # guided backprop alone vs. times the CAM


class BatchedGradCAM(GradCAM):
    """GradCAM with a batch size, as ScoreCAM/AblationCAM take one (https://arxiv.org/abs/1610.02391)."""

    seen: ClassVar[list[int]] = []

    def __init__(self, model, target_layers=None, reshape_transform=None, *, batch_size=32):
        super().__init__(model, target_layers, reshape_transform=reshape_transform)
        BatchedGradCAM.seen.append(batch_size)


class PickyCAM(GradCAM):
    """A method whose own check refuses every layer (https://arxiv.org/abs/1610.02391)."""

    def get_cam_weights(self, *args):
        raise NotApplicableError("picky needs\na layer it likes")


class BrokenCAM(GradCAM):
    """A method with a bug: a plain ValueError that is no refusal (https://arxiv.org/abs/1610.02391)."""

    def get_cam_weights(self, *args):
        raise ValueError("index 3 is out of bounds\nfor a bug")


class CrashingCAM(GradCAM):
    """A method with another bug (https://arxiv.org/abs/1610.02391)."""

    def get_cam_weights(self, *args):
        raise RuntimeError("shapes do not match")


def test_method_all_runs_every_registered_method_and_writes_a_grid(capsys, tmp_path, monkeypatch):
    """--method all iterates the registry, skipping (with the reason) a method that refuses the layer;
    --batch-size reaches only the constructors that take it. The registry's own methods that take a
    batch_size (a forward pass per channel: minutes here) are left out; their tests cover them."""
    methods = {
        name: info
        for name, info in METHODS.items()
        if "batch_size" not in inspect.signature(info.cls).parameters
    }
    methods["batchedcam"] = MethodInfo("batchedcam", BatchedGradCAM, "t", "[t](http://t)")
    methods["pickycam"] = MethodInfo("pickycam", PickyCAM, "t", "[t](http://t)")
    monkeypatch.setattr(
        cli, "METHODS", methods
    )  # the command's view of the registry; the registry is untouched
    monkeypatch.setattr(BatchedGradCAM, "seen", [])
    out_dir = tmp_path / "new" / "dir"
    code, out, err = _run(
        capsys,
        *("--image-path", CHELSEA, "--method", "all", "--output-dir", str(out_dir)),
        *("--target-layer", "model._blocks[-1]", "--batch-size", "7", "--category", "tabby"),
    )
    assert code == 0 and err == "", err
    assert BatchedGradCAM.seen == [7]
    assert "target layer _blocks.15 (MBConvBlock)" in out and "explaining tabby (281)" in out
    skipped = dict(re.findall(r"^skipped (\S+): (.*)$", out, flags=re.M))
    assert skipped["pickycam"] == "picky needs a layer it likes"  # one line
    ran = [name for name in methods if name not in skipped]
    assert {"gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "eigengradcam", "batchedcam"} <= set(
        ran
    )
    for name in METHODS.keys() | methods.keys():
        for suffix in ("cam", "gb", "cam_gb"):
            assert (out_dir / f"{name}_{suffix}.jpg").is_file() == (name in ran), (name, suffix)
    grid = np.asarray(Image.open(out_dir / GRID_NAME))
    tiles = len(ran) + 1
    rows = -(-tiles // 6)
    columns = -(-tiles // rows)
    assert grid.shape == (rows * (160 + 24), columns * 241, 3)  # 337 x 224 pictures as 241 x 160 tiles
    photo = Image.open(CHELSEA).convert("RGB").resize((337, 224), Image.BILINEAR)
    photo = np.asarray(photo.resize((241, 160), Image.LANCZOS), dtype=float)
    assert np.abs(grid[24 : 24 + 160, :241].astype(float) - photo).mean() < 6  # the photo tile (JPEG)


def test_method_all_reports_a_broken_method_runs_the_others_and_exits_1(capsys, tmp_path, monkeypatch):
    """Only NotApplicableError is a skip; a method raising anything else is a failure, in one line."""
    methods = {
        name: METHODS[name] for name in ("gradcam", "cam", "eigencam")
    }  # cam refuses _blocks.15 (1280 fc inputs, 320 channels)
    for name, cls in (("brokencam", BrokenCAM), ("crashingcam", CrashingCAM), ("pickycam", PickyCAM)):
        methods[name] = MethodInfo(name, cls, "t", "[t](http://t)")
    monkeypatch.setattr(cli, "METHODS", methods)  # the command's view of the registry
    code, out, err = _run(capsys, "--image-path", CHELSEA, "--method", "all", "--output-dir", str(tmp_path))
    assert code == 1
    assert err.splitlines() == [
        "failed brokencam: ValueError: index 3 is out of bounds for a bug",
        "failed crashingcam: RuntimeError: shapes do not match",
        "pytorch-grad-cam: error: 2 of 6 methods failed: brokencam, crashingcam (see above)",
    ]
    skipped = dict(re.findall(r"^skipped (\S+): (.*)$", out, flags=re.M))
    assert sorted(skipped) == ["cam", "pickycam"] and "fc_layer has 1280 input features" in skipped["cam"]
    for name in ("gradcam", "eigencam"):  # the others ran and their pictures are written
        assert re.search(rf"^{name}: \d+\.\d s$", out, flags=re.M)
        assert (tmp_path / f"{name}_cam.jpg").is_file()
    assert not (tmp_path / "brokencam_cam.jpg").exists() and (tmp_path / GRID_NAME).is_file()


def test_a_method_that_refuses_the_layer_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(
        cli, "METHODS", {**METHODS, "pickycam": MethodInfo("pickycam", PickyCAM, "t", "[t](http://t)")}
    )
    code, out, err = _run(capsys, "--image-path", CHELSEA, "--method", "pickycam")
    assert code == 2 and err.count("\n") == 1
    assert "--method pickycam on layer _blocks.15: picky needs a layer it likes" in err
    code, out, err = _run(capsys, "--image-path", CHELSEA, "--method", "cam")  # the real refusal
    assert code == 2 and "--method cam on layer _blocks.15: fc_layer has 1280 input features" in err
    assert err.endswith("feeds the final pooling: --target-layer _bn1 (or _conv_head)\n")  # names them


class NoisyCAM(GradCAM):
    """Random channel weights, like RandomCAM (https://arxiv.org/abs/1610.02391)."""

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        return torch.rand(activations.shape[:2])


def test_random_methods_repeat_and_the_callers_generator_is_untouched(lite0, monkeypatch):
    monkeypatch.setattr(
        cli, "METHODS", {**METHODS, "noisycam": MethodInfo("noisycam", NoisyCAM, "t", "[t](http://t)")}
    )
    _, x = _input(lite0, CHELSEA)
    layer, _ = find_layer(lite0.model, lite0.target_layer)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = explain(lite0.model, layer, x, 285, ["noisycam"])["noisycam"]
    second = explain(lite0.model, layer, x, 285, ["noisycam"])["noisycam"]
    other_seed = explain(lite0.model, layer, x, 285, ["noisycam"], seed=1)["noisycam"]
    assert np.array_equal(first, second) and not np.array_equal(first, other_seed)
    assert torch.equal(torch.get_rng_state(), state)


def test_make_grid_layout_and_labels():
    tiles = [np.full((30, 40, 3), 40 * i, dtype=np.uint8) for i in range(7)]
    grid = make_grid(tiles, [f"t{i}" for i in range(7)], columns=5, label_height=24)
    assert grid.shape == (2 * 54, 4 * 40, 3)  # 7 tiles in rows of at most 5: two rows of 4
    assert (grid[24:54, 40:80] == 40).all()  # tile 1: row 0, column 1
    assert (grid[78:108, 80:120] == 240).all()  # tile 6: row 1, column 2
    assert (grid[54:108, 120:160] == 255).all()  # no tile 7: white
    assert (grid[:24, :40] < 128).any() and (grid[54:78, 80:120] < 128).any()  # labels drawn
    with pytest.raises(ValueError, match="one label per tile"):
        make_grid(tiles, ["a"])


def test_torchvision_model_with_weights_file_and_its_default_layer(capsys, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "mnasnet.pt"
    torch.save(torchvision.models.mnasnet0_5(weights=None).state_dict(), weights)
    code, out, err = _run(
        capsys,
        *("--image-path", CHELSEA, "--model", "mnasnet0_5", "--weights", str(weights)),
        *("--output-dir", str(tmp_path), "--category", "281", "--eigen-smooth"),
    )
    assert code == 0 and err == "", err
    assert "model mnasnet0_5, target layer layers.16 (ReLU)" in out and "explaining tabby (281)" in out
    assert np.asarray(Image.open(tmp_path / "gradcam_cam.jpg")).shape == (224, 337, 3)


FAMILIES = [
    ("resnet18", "layer4.1"),
    ("vgg11", "features.20"),
    ("densenet121", "features.norm5"),
    ("squeezenet1_1", "features.12"),
    ("mobilenet_v3_small", "features.12"),
    ("efficientnet_b0", "features.8"),
    ("convnext_tiny", "features.7"),
    ("mnasnet0_5", "layers.16"),
    ("shufflenet_v2_x0_5", "conv5"),
    ("googlenet", "inception5b"),
    ("inception_v3", "Mixed_7c"),
    ("maxvit_t", "blocks.3"),
    ("swin_t", "features.7"),
    ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),
]


@pytest.mark.filterwarnings("ignore:The default weight initialization")
@pytest.mark.parametrize("name, qualified", FAMILIES)
def test_default_target_layer_of_each_torchvision_family_gives_a_2d_map(name, qualified):
    """Built on the meta device (no memory, no weights): the default layer exists and, after the
    family's reshape transform, outputs (B, C, h, w)."""
    family = torchvision_family(name)
    size = torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
    captured = []
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None).eval()
        layer, found = find_layer(model, family.target_layer)
        handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            logits = model(torch.empty(1, 3, size, size))
        finally:
            handle.remove()
    assert found == qualified
    assert len(captured) == 1 and logits.shape == (1, 1000)
    value = captured[0] if family.reshape_transform is None else family.reshape_transform(captured[0])
    assert value.dim() == 4 and value.shape[0] == 1


def test_regnet_default_layer():
    torch.manual_seed(0)
    model = torchvision.models.regnet_x_400mf(weights=None)
    layer, found = find_layer(model, torchvision_family("regnet_x_400mf").target_layer)
    assert found == "trunk_output.block4" and layer is model.trunk_output[-1]


def test_find_layer_spellings(resnet18):
    for path in ("layer4.-1", "layer4[-1]", "model.layer4[-1]", "layer4.1", " layer4.1 "):
        layer, name = find_layer(resnet18, path)
        assert layer is resnet18.layer4[-1] and name == "layer4.1"
    assert find_layer(resnet18, "layer4.0.conv1")[0] is resnet18.layer4[0].conv1
    with pytest.raises(Exception, match=r"the model has no child 'layer5' \(its children: conv1, bn1, relu"):
        find_layer(resnet18, "layer5")
    with pytest.raises(Exception, match=r"layer4 has no child '2' \(its children: 0 to 1, or -2 to -1\)"):
        find_layer(resnet18, "layer4.2")
    with pytest.raises(Exception, match="has no children"):
        find_layer(resnet18, "fc.weight")
    with pytest.raises(Exception, match="name a layer inside the model"):
        find_layer(resnet18, "model")


def test_parse_category():
    assert parse_category("281", CATEGORIES, 1000) == 281
    assert parse_category(" Tiger_Cat ", CATEGORIES, 1000) == 282
    assert parse_category("EGYPTIAN cat", CATEGORIES, 1000) == 285
    assert parse_category("7", None, 10) == 7
    with pytest.raises(Exception, match=r"did you mean 'tabby' \(281\)"):
        parse_category("tabbby", CATEGORIES, 1000)
    with pytest.raises(Exception, match=r"names several classes \(264, 474\); pass the index"):
        parse_category("Cardigan", CATEGORIES, 1000)  # the dog and the sweater
    with pytest.raises(Exception, match="out of range: the model has 1000 classes, 0 to 999"):
        parse_category("1000", CATEGORIES, 1000)
    with pytest.raises(Exception, match="no class names; pass a class index"):
        parse_category("tabby", None, 10)


# -- user errors: one line on stderr, exit status 2, no traceback ----------------------------------


def _bad_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01 not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, other)
    return text, junk, other


ERRORS = [
    ([], "the following arguments are required: --image-path"),
    (["--image-path", "missing.png"], "--image-path missing.png: no such file"),
    (["--image-path", "{text}"], "cannot read it as an image"),
    (["--image-path", "{chelsea}", "--method", "gradcan"], "unknown method; did you mean gradcam"),
    (["--image-path", "{chelsea}", "--model", "resnet5"], "unknown model; did you mean resnet50"),
    (
        ["--image-path", "{chelsea}", "--target-layer", "_blocks.99"],
        "_blocks has no child '99' (its children: 0 to 15, or -16 to -1)",
    ),
    (["--image-path", "{chelsea}", "--target-layer", "_fc"], "is not a (batch, channels, height, width)"),
    (["--image-path", "{chelsea}", "--target-layer", "_swish"], "runs 2 times in one forward pass"),
    (["--image-path", "{chelsea}", "--category", "1000"], "out of range: the model has 1000 classes"),
    (["--image-path", "{chelsea}", "--category", "-1"], "out of range"),
    (["--image-path", "{chelsea}", "--category", "espreso"], "did you mean 'espresso' (967)"),
    (["--image-path", "{chelsea}", "--device", "nonsense"], "--device nonsense: not available here"),
    (
        ["--image-path", "{chelsea}", "--batch-size", "0"],
        "argument --batch-size: expected an int >= 1, got '0'",
    ),
    (["--image-path", "{chelsea}", "--weights", "missing.pt"], "--weights missing.pt: no such file"),
    (["--image-path", "{chelsea}", "--weights", "{junk}"], "not a PyTorch state_dict"),
    (["--image-path", "{chelsea}", "--weights", "{other}"], "does not fit --model efficientnet_lite0"),
    (["--image-path", "{chelsea}", "--output-dir", "{text}"], "cannot create it"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[message[:30] for _, message in ERRORS])
def test_user_errors(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    text, junk, other = _bad_files(tmp_path)
    args = [a.format(chelsea=CHELSEA, text=text, junk=junk, other=other) for a in args]
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pytorch-grad-cam: error: ")
    assert message in err
    assert "Traceback" not in err


def test_use_cuda_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = _run(capsys, "--image-path", CHELSEA, "--use-cuda")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--use-cuda: CUDA is not available here" in err


def test_offline_download_failure_names_weights_and_the_default_model(capsys, tmp_path, monkeypatch):
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    code, out, err = _run(capsys, "--image-path", CHELSEA, "--model", "resnet50")
    assert code == 2 and err.count("\n") == 1
    assert out == "" or out.startswith("Downloading: ")  # torch.hub's own note on the attempt
    assert "could not get the ImageNet weights of resnet50" in err
    assert "pass --weights PATH" in err and f"use the default model {DEFAULT_MODEL}" in err


def test_help_exits_zero(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for flag in (
        "--image-path",
        "--method",
        "--use-cuda",
        "--aug-smooth",
        "--eigen-smooth",
        "--device",
        "--model",
    ):
        assert flag in out
    for flag in ("--weights", "--target-layer", "--category", "--output-dir", "--batch-size"):
        assert flag in out
    for name in METHODS:
        assert name in out


# -- packaging ------------------------------------------------------------------------------------


def _console_scripts() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            return ast.literal_eval(node.value)["console_scripts"]
    raise AssertionError("setup.py has no entry_points")


def test_console_script_resolves_to_the_dispatcher_that_cam_py_runs():
    scripts = dict(tuple(part.strip() for part in entry.split("=")) for entry in _console_scripts())
    module, function = scripts["pytorch-grad-cam"].split(":")
    assert (module, function) == ("pytorch_grad_cam.cli.console", "main")
    imported = __import__(module, fromlist=[function])
    assert getattr(imported, function) is console.main
    assert "from pytorch_grad_cam.cli.console import main" in (ROOT / "cam.py").read_text(encoding="utf-8")


def test_the_console_hands_image_dir_to_the_dataset_runner_and_the_rest_to_cli(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "main", lambda argv, **kw: calls.append(("cli", argv, kw)) or 0)
    monkeypatch.setattr(dataset, "main", lambda argv, **kw: calls.append(("batch", argv, kw)) or 0)
    assert console.main(["--image-path", "x.png"]) == 0
    assert console.main(["--image-dir=photos", "--output-dir", "out"]) == 0
    assert calls[0] == ("cli", ["--image-path", "x.png"], {})
    assert calls[1][:2] == ("batch", ["--image-dir=photos", "--output-dir", "out"])


def test_cli_main_alone_points_image_dir_to_the_dataset_runner(capsys):
    code, out, err = _run(capsys, "--image-dir", "photos", "--output-dir", "out")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--image-dir belongs to the dataset runner" in err


def test_python_dash_m_cli_help():
    result = subprocess.run(
        [sys.executable, "-m", "pytorch_grad_cam.cli.photo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "--image-path" in result.stdout and "gradcam" in result.stdout
