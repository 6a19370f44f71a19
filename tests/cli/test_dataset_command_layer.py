"""The dataset runner's command line with no --target-layer (or ``auto``): the layer search picks
the layer, the command prints why, and the CAMs equal those of the same layer given by path."""

from __future__ import annotations

import batch_helpers as H
import numpy as np
import torch

from pytorch_grad_cam.cli import dataset
from pytorch_grad_cam.cli.models import load_model
from pytorch_grad_cam.layer_search import find_target_layer

FACTORY = f"{H.MODELS}:tiny_cnn"


def _run(capsys, photos, out, *extra):
    arguments = ["--image-dir", str(photos), "--output-dir", str(out), "--model", FACTORY]
    arguments += ["--image-size", str(H.IMAGE_SIZE), "--num-workers", "0", "--no-progress", *extra]
    code = dataset.main(arguments, prog="cam.py")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    return captured.out.splitlines()


def _cams(out):
    return {str(p.relative_to(out)): np.load(p) for p in sorted(out.rglob("*.npy"))}


def test_no_target_layer_searches_prints_the_choice_and_matches_the_path(capsys, tmp_path):
    photos = H.make_photo_dir(tmp_path / "photos")
    loaded = load_model(FACTORY)
    probe = torch.randn(1, 3, H.IMAGE_SIZE, H.IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    choice = find_target_layer(loaded.model, probe)
    assert choice.name == "features.3"
    omitted = _run(capsys, photos, tmp_path / "omitted")
    assert omitted[0] == choice.reason and " 0 already done" in omitted[1]
    auto = _run(capsys, photos, tmp_path / "auto", "--target-layer", "auto")
    assert auto[0] == choice.reason
    path = _run(capsys, photos, tmp_path / "path", "--target-layer", "features.3")
    assert len(path) == 1 and " 0 already done" in path[0]  # the user's own path: no layer line
    cams = [_cams(tmp_path / name) for name in ("omitted", "auto", "path")]
    written = int(omitted[1].split(" images: ")[1].split(" CAMs written")[0])
    assert len(cams[0]) == written > 0 and cams[0].keys() == cams[1].keys() == cams[2].keys()
    for name, cam in cams[0].items():
        assert cam.max() > 0
        assert np.array_equal(cam, cams[1][name]) and np.array_equal(cam, cams[2][name])
    # an earlier layer gives other maps: the comparison above can tell layers apart
    _run(capsys, photos, tmp_path / "first", "--target-layer", "features.1")
    first = _cams(tmp_path / "first")
    assert any(not np.allclose(first[name], cam) for name, cam in cams[0].items())


def test_auto_with_other_paths_is_a_usage_error(capsys, tmp_path):
    photos = H.make_photo_dir(tmp_path / "photos")
    arguments = ["--image-dir", str(photos), "--output-dir", str(tmp_path / "out"), "--model", FACTORY]
    assert (
        dataset.main([*arguments, "--target-layer", "auto", "--target-layer", "features.1"], prog="cam.py")
        == 2
    )
    err = capsys.readouterr().err
    assert err == "cam.py: error: --target-layer auto cannot be combined with other --target-layer paths\n"
