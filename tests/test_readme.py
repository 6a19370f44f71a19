"""Every command and code block of README.md and docs/ runs, and its pictures are what the commands make.

The blocks are read by ``tests/markdown_blocks.py`` (which says what each fence language means).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import markdown_blocks
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from pytorch_grad_cam.cli import photo as cli
from pytorch_grad_cam.cli.console import main  # what cam.py and pytorch-grad-cam run
from pytorch_grad_cam.cli.photo import GRID_COLUMNS, GRID_NAME, GRID_TILE_HEIGHT, build_parser
from pytorch_grad_cam.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: The README's first CAM command, run below as a new process, exactly as written.
FIRST_COMMAND = "python cam.py --image-path examples/chelsea.png --method gradcam"
#: Commands that set up and run this test suite: exercised by running the suite itself.
SUITE_COMMANDS = {'pip install -e ".[test]"', "python -m pytest", 'pip install -e ".[docs]"'}
#: Commands run by another test file (which this file checks exists), as file -> test function.
ELSEWHERE = {
    "torchrun": (
        "batch/test_batch_world.py",
        "test_torchrun_two_cpu_processes_give_the_same_files_and_one_merged_manifest",
    ),
    "detection": ("cli/test_cli_detection.py", "test_the_readme_detection_command_as_written"),
    "segmentation": ("cli/test_cli_segmentation.py", "test_the_docs_segmentation_command_as_written"),
    "tutorial": ("test_tutorials.py", "test_each_tutorial_runs_and_writes_its_pictures"),
    "docs": ("test_docs_site.py", "test_the_site_builds_strictly"),
}


def _commands() -> list[str]:
    """Every command of README.md and docs/, in order."""
    return markdown_blocks.commands()


#: Kinds of command the ``runs`` fixture leaves to others (another test, or the parse check below).
SEPARATE = ("suite", "torchrun", "detection", "segmentation", "tutorial", "docs", "benchmark")


class _Parsed(Exception):
    """Raised instead of running a benchmark once its command line has been parsed."""


def test_benchmark_commands_parse(monkeypatch):
    """A benchmark takes minutes, so its commands in the docs are not run: each is parsed by the
    script's own argparse parser (an unknown script, option or value fails), then stopped."""
    import argparse
    import runpy

    benchmarks = [command for command in _commands() if _kind(command) == "benchmark"]
    assert benchmarks
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    for command in benchmarks:
        words = shlex.split(command, comments=True)
        argv = [word for word in words if not re.fullmatch(r"\w+=\S*", word)]  # no VAR=value prefixes
        script = ROOT / argv[1]
        assert script.is_file(), command
        monkeypatch.setattr(sys, "argv", [str(script), *argv[2:]])
        with pytest.raises(_Parsed):
            runpy.run_path(str(script), run_name="__main__")


def _kind(command: str) -> str | None:
    if command in SUITE_COMMANDS:
        return "suite"
    if re.match(r"torchrun .* cam\.py --image-dir ", command):
        return "torchrun"
    if command.startswith("python cam.py --task detection "):
        return "detection"
    if command.startswith("python cam.py --task segmentation "):
        return "segmentation"
    if command.startswith(("python cam.py --image-dir ", "python -m pytorch_grad_cam.batch ")):
        return "batch"
    if command.startswith(("python cam.py ", "pytorch-grad-cam ")):
        return "cam"
    if re.match(r"python usage_examples/\w+\.py ", command):
        return "example"
    if re.fullmatch(r"python docs/tutorials/\w+\.py", command):
        return "tutorial"
    if command == "mkdocs build --strict":
        return "docs"
    if re.match(r"(\w+=\S+ )*python benchmarks/\w+\.py( |$)", command):
        return "benchmark"
    return None


def test_every_readme_command_is_one_this_file_runs():
    commands = _commands()
    assert len(commands) >= 10
    unknown = [command for command in commands if _kind(command) is None]
    assert not unknown, f"commands in README.md or docs/ that no test runs: {unknown}"
    readme = markdown_blocks.commands(README)
    assert readme[:3] == ['pip install -e ".[test]"', "python -m pytest", FIRST_COMMAND]


def _expected_files(command: str, skipped: Sequence[str] = ()) -> list[str]:
    argv = shlex.split(command)
    if _kind(command) == "batch":
        return [os.path.join(argv[argv.index("--output-dir") + 1], "manifest.jsonl")]
    if _kind(command) == "cam":
        args = build_parser().parse_args(argv[2:] if argv[0] == "python" else argv[1:])
        every = [name for name in cli.METHODS if name not in skipped]  # the command's view of the registry
        methods = every if args.method == "all" else [args.method]
        names = [f"{method}_{suffix}.jpg" for method in methods for suffix in ("cam", "gb", "cam_gb")]
        names += [GRID_NAME] if args.method == "all" else []
        return [os.path.join(args.output_dir, name) for name in names]
    method = argv[argv.index("--method") + 1]
    suffixes = ("cam", "gb", "cam_gb") if "efficientnet" in argv[1] else ("cam",)
    prefix = Path(argv[1]).stem.replace("_example", "").lower()  # vit, swint, efficientnet
    return [f"{prefix}_{method}_{suffix}.jpg" for suffix in suffixes]


def _make_missing_weights(workdir: Path, argv: list[str]) -> None:
    """A command with ``--weights FILE --model NAME``: a seeded random state_dict (no download here)."""
    if "--weights" not in argv:
        return
    path = workdir / argv[argv.index("--weights") + 1]
    if not path.exists():
        torch.manual_seed(0)
        model = torchvision.models.get_model(argv[argv.index("--model") + 1], weights=None)
        head = [module for module in model.modules() if isinstance(module, torch.nn.Linear)][-1]
        if not head.weight.any():  # torchvision's ViT starts its head at zero: every score 0, blank maps
            torch.nn.init.normal_(head.weight, std=0.02)
        torch.save(model.state_dict(), path)


def _load_example(script: str):
    spec = importlib.util.spec_from_file_location(f"readme_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _repository_like(path: Path) -> Path:
    """``path`` made to look like the repository root to the commands, plus a ``photos/`` folder."""
    (path / "examples").symlink_to(ROOT / "examples")
    (path / "cam.py").symlink_to(ROOT / "cam.py")
    (path / "photos").mkdir()
    for name in ("chelsea.png", "coffee.png"):
        (path / "photos" / name).symlink_to(ROOT / "examples" / name)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return _repository_like(tmp_path_factory.mktemp("readme"))


def _runs_a_pass_per_channel(name: str) -> bool:
    """ScoreCAM, AblationCAM and their kin (their class takes a ``batch_size``): hundreds to thousands of
    forward passes, minutes on the real model on a CPU. Their own tests cover them; the README's
    ``--method all`` command runs here without them (its gallery check allows for that)."""
    return "batch_size" in inspect.signature(METHODS[name].cls).parameters


@pytest.fixture(scope="module")
def runs(workdir):
    """Run every README command but the suite's own and the first (run as a process below), in order.

    Returns:
        command -> (exit status, stdout, {expected file: (H, W, 3) uint8 image or None if missing},
        the registered methods left out of a ``--method all`` run).
    """
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        for command in _commands():
            if _kind(command) in SEPARATE or command == FIRST_COMMAND:
                continue
            argv = shlex.split(command)
            for name in _expected_files(command):
                (workdir / name).unlink(missing_ok=True)
            _make_missing_weights(workdir, argv)
            out = io.StringIO()
            with pytest.MonkeyPatch.context() as registry, contextlib.redirect_stdout(out):
                left_out = []
                if _kind(command) == "cam" and "--method all" in command:
                    left_out = [name for name in METHODS if _runs_a_pass_per_channel(name)]
                    kept = {name: info for name, info in METHODS.items() if name not in left_out}
                    registry.setattr(cli, "METHODS", kept)  # the command's view; the registry is untouched
                if _kind(command) == "cam":
                    code = main(argv[2:] if argv[0] == "python" else argv[1:])
                elif _kind(command) == "batch":
                    code = main(argv[2:])  # hands --image-dir commands to the batch runner
                else:
                    _load_example(argv[1]).main(argv[2:])
                    code = 0
                skipped = re.findall(r"^skipped (\S+): ", out.getvalue(), flags=re.M)  # refused the layer
                expected = _expected_files(command, skipped)
            images = {
                name: np.asarray(Image.open(workdir / name))
                if name.endswith(".jpg") and (workdir / name).is_file()
                else None
                for name in expected
            }
            results[command] = (code, out.getvalue(), images, left_out)
    return results


def _photo_size(command: str) -> tuple[int, int]:
    """(H, W) of the pictures cam.py writes: the photo with its shorter side at 224."""
    argv = shlex.split(command)
    with Image.open(ROOT / argv[argv.index("--image-path") + 1]) as photo:
        scale = 224 / min(photo.size)
        return round(photo.height * scale), round(photo.width * scale)


def test_every_command_succeeds_and_writes_its_pictures(runs, workdir):
    assert runs
    for command, (code, out, images, _) in runs.items():
        assert code == 0, command
        if _kind(command) == "batch":
            (manifest,) = images  # one JSON line per photo
            lines = (workdir / manifest).read_text(encoding="utf-8").splitlines()
            assert len(lines) == 2 and all('"cam": ' in line for line in lines), lines
            continue
        for name, image in images.items():
            assert image is not None, f"{command} did not write {name}"
            assert image.std() > 5, f"{name} of {command} is blank"
            if _kind(command) == "cam" and not name.endswith(GRID_NAME):
                assert image.shape == (*_photo_size(command), 3), (command, name)
            elif _kind(command) == "example":
                assert image.shape == (224, 224, 3), (command, name)
        if _kind(command) == "cam":
            assert "top-5 classes:" in out and "wrote:" in out


def test_first_command_as_written(workdir):
    """The first CAM command, run as a user runs it: a new Python process in the repository root."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, *shlex.split(FIRST_COMMAND)[1:]]  # "python": the interpreter running the tests
    result = subprocess.run(argv, cwd=workdir, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "  1. Egyptian cat (285): " in result.stdout
    for name in ("gradcam_cam.jpg", "gradcam_gb.jpg", "gradcam_cam_gb.jpg"):
        assert f"  {name}" in result.stdout
        assert np.asarray(Image.open(workdir / name)).shape == (224, 337, 3)


def _the_command(pattern: str) -> str:
    (command,) = [command for command in _commands() if re.search(pattern, command)]
    return command


def _tiles(grid: np.ndarray, count: int) -> list[np.ndarray]:
    """The ``count`` labelled tiles of a ``cam_grid.jpg`` of 337 x 224 pictures (241 x 160 tiles)."""
    height, width = GRID_TILE_HEIGHT + 24, round(337 * GRID_TILE_HEIGHT / 224)
    rows = -(-count // GRID_COLUMNS)
    columns = -(-count // rows)
    assert grid.shape == (rows * height, columns * width, 3), (
        "docs/gallery.jpg is stale: python docs/make_images.py"
    )
    return [
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width]
        for row, column in (divmod(index, columns) for index in range(count))
    ]


def test_gallery_image_is_what_method_all_makes(runs):
    """docs/gallery.jpg has a tile for the photo and each registered method that takes the layer, and
    the tiles of the methods run here equal the committed ones."""
    command = _the_command("--method all")
    _, out, images, left_out = runs[command]
    assert "explaining Egyptian cat (285)" in out
    skipped = re.findall(r"^skipped (\S+): ", out, flags=re.M)
    everything = [name for name in METHODS if name not in skipped]
    ran = [name for name in everything if name not in left_out]
    grid = images[os.path.join(build_parser().parse_args(shlex.split(command)[2:]).output_dir, GRID_NAME)]
    made = _tiles(grid, 1 + len(ran))
    committed = _tiles(np.asarray(Image.open(ROOT / "docs" / "gallery.jpg")), 1 + len(everything))
    for name in ["(the photo)", *ran]:
        index = 0 if name == "(the photo)" else 1 + ran.index(name)
        committed_index = 0 if name == "(the photo)" else 1 + everything.index(name)
        difference = np.abs(committed[committed_index].astype(float) - made[index]).mean()
        assert difference < 3, f"docs/gallery.jpg is stale at {name}: run python docs/make_images.py"


def test_one_photo_two_classes(runs):
    cat_command = _the_command('--category "tiger cat"')
    cup_command = _the_command("--category espresso")
    cat = runs[cat_command][2]["cat/gradcam_cam.jpg"].astype(float)
    cup = runs[cup_command][2]["cup/gradcam_cam.jpg"].astype(float)
    assert "explaining tiger cat (282)" in runs[cat_command][1]
    assert "explaining espresso (967)" in runs[cup_command][1]
    # Same photo under both overlays: the difference of their redness (R - B of the jet colours)
    # is the difference of the two CAMs. The cat's CAM is redder on the left half, the cup's on
    # the right.
    redness = (cat[..., 0] - cat[..., 2]) - (cup[..., 0] - cup[..., 2])
    half = redness.shape[1] // 2
    assert redness[:, :half].mean() > 100 and redness[:, half:].mean() < -50
    committed = np.asarray(Image.open(ROOT / "docs" / "cat_and_cup.jpg")).astype(float)
    assert committed.shape == (2 * cat.shape[0], cat.shape[1], 3)
    assert np.abs(committed - np.concatenate([cat, cup], axis=0)).mean() < 3, "run python docs/make_images.py"


def test_commands_run_elsewhere_are_run_there():
    for kind, (test_file, test_name) in ELSEWHERE.items():
        assert any(_kind(command) == kind for command in _commands()), f"no {kind} command in the docs"
        assert f"def {test_name}(" in (ROOT / "tests" / test_file).read_text(encoding="utf-8")


#: What a page's Python blocks may use without defining it (the page says where it comes from):
#: ``model`` a torchvision resnet18, ``x`` its (1, 3, 64, 64) input, ``rgb_img`` the matching
#: float picture, ``grayscale`` GradCAM's maps of ``x``, ``vit`` and ``swin`` timm's DeiT-tiny and Swin-T.
GIVEN = ("model", "x", "rgb_img", "grayscale", "vit", "swin")


@pytest.fixture(scope="module")
def given():
    import timm
    import torchvision

    from pytorch_grad_cam import GradCAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with GradCAM(model, [model.layer4[-1]]) as cam:
        grayscale = cam(x)
    return {
        "model": model,
        "x": x,
        "rgb_img": np.random.default_rng(0).random((64, 64, 3), dtype=np.float32),
        "grayscale": grayscale,
        "vit": timm.create_model("deit_tiny_patch16_224", pretrained=False).eval(),
        "swin": timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval(),
    }


def _python_pages() -> list[Path]:
    return [
        path
        for path in markdown_blocks.markdown_files()
        if any(b.language == "python" and not b.snippet for b in markdown_blocks.blocks(path))
    ]


def test_every_block_is_run_checked_or_marked():
    """A block is bash (run), python (run), text (output) or marked ``<!-- not run: why -->``; few are."""
    every = markdown_blocks.all_blocks()
    assert len(every) >= 30
    unmarked = [b.where for b in every if b.language not in ("bash", "python", "text") and b.not_run is None]
    assert not unmarked, (
        f"blocks in a language no test runs, and not marked '<!-- not run: why -->': {unmarked}"
    )
    marked = [b for b in every if b.not_run is not None]
    assert len(marked) <= 3, [b.where for b in marked]
    assert all(b.language == "py" for b in marked), "a marked block is shown with the 'py' fence"
    for block in every:
        if block.snippet:
            assert block.language == "python" and re.fullmatch(r"docs/tutorials/\w+\.py", block.snippet), (
                block.where
            )
            assert (ROOT / block.snippet).is_file(), block.where


def test_marked_blocks_are_valid_python():
    """Not run (they need weights or packages the tests do not have), but they must parse."""
    for block in markdown_blocks.all_blocks():
        if block.not_run is not None:
            compile(block.body, block.where, "exec")


@pytest.mark.parametrize("page", _python_pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_python_blocks_run_in_order(page, given, tmp_path, monkeypatch):
    monkeypatch.chdir(_repository_like(tmp_path))
    torch.manual_seed(0)
    namespace = dict(given)
    for block in markdown_blocks.blocks(page):
        if block.language == "python" and not block.snippet:
            exec(compile(block.body, block.where, "exec"), namespace)
    if page == README:  # "Using it from code" defines its own model, x (224 x 224 chelsea.png) and rgb_img
        assert namespace["grayscale"].shape == (1, 224, 224)
        assert namespace["visualization"].shape == (224, 224, 3)


def test_guided_backprop_block_gives_its_pictures(given, tmp_path, monkeypatch):
    """docs/methods.md's guided backpropagation block: the shapes and types it says."""
    monkeypatch.chdir(_repository_like(tmp_path))
    namespace = dict(given)
    (block,) = [
        b for b in markdown_blocks.blocks(ROOT / "docs" / "methods.md") if "GuidedBackpropReLUModel" in b.body
    ]
    exec(compile(block.body, block.where, "exec"), namespace)
    assert namespace["gb"].shape == (64, 64, 3) and namespace["gb"].dtype == np.float32
    assert namespace["cam_gb"].shape == (64, 64, 3) and namespace["cam_gb"].dtype == np.uint8


def test_example_photos_are_what_make_examples_makes(tmp_path):
    """examples/README.md's command rebuilds the committed photos, pixel for pixel."""
    _load_example("examples/make_examples.py").main(tmp_path)
    for name in ("chelsea.png", "coffee.png", "cat_and_cup.png"):
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / name)), np.asarray(Image.open(ROOT / "examples" / name))
        )


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and the docs site make it (lower case, no punctuation, - for spaces)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def test_readme_links_reach_files_and_headings():
    """README.md's relative links (to docs/ pages, pictures) point at files that exist, and their
    #anchors at headings of those files (GitHub renders the README, not the site's strict build)."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"https?://", link)]
    assert len(relative) >= 10
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README.md links to {link}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"README.md links to {link}: no such heading"


def _resolves(dotted: str) -> bool:
    """Whether ``a.b.c`` is a module, or an attribute path inside the longest importable module."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                value = getattr(value, name)
        except AttributeError:
            return False
        return True
    return False


def test_every_module_path_named_in_the_docs_exists():
    """A dotted ``pytorch_grad_cam.x.y`` name in README.md or docs/ (prose or code) is a module or an
    object that exists: a module moved or renamed makes the page that names it fail here."""
    stale = set()
    for path in markdown_blocks.markdown_files():
        text = path.read_text(encoding="utf-8")
        for dotted in set(re.findall(r"\bpytorch_grad_cam(?:\.\w+)+", text)):
            if not _resolves(dotted):
                stale.add(f"{path.relative_to(ROOT)}: {dotted}")
    assert not stale, sorted(stale)


def test_every_repository_file_named_in_the_docs_exists():
    """A file of the repository named in README.md or docs/ (``tests/...py``, ``benchmarks/...``,
    ``usage_examples/...``, ``examples/...``, ``docs/...``) exists."""
    pattern = (
        r"(?<![\w/])((?:tests|benchmarks|usage_examples|examples|docs)/[\w/.-]+\.(?:py|md|png|jpg|jsonl?))"
    )
    missing = set()
    for path in markdown_blocks.markdown_files():
        for name in re.findall(pattern, path.read_text(encoding="utf-8")):
            if not (ROOT / name).is_file():
                missing.add(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, sorted(missing)


def test_ci_runs_the_readme_install_and_test_commands_and_installs_the_browser():
    """``.ci/run`` installs Chromium when it is missing, then runs README.md's first two commands."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, test = markdown_blocks.commands(README)[:2]
    lines = [line.strip() for line in script.splitlines()]
    assert f"python -m {install}" in lines and test in lines
    assert lines[-1] == test and lines.index(f"python -m {install}") < len(lines) - 1  # install, then test
    assert "apt-get install -y -qq chromium" in script and "command -v chromium" in script
