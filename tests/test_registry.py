"""The registry drives the test matrix: every registered method keeps the core's guarantees.

Each check runs over ``METHODS``, so a method added to the registry is covered without touching
this file. A method with a ``seed`` option is built with ``seed=0`` (its randomness is then shared
by the images of a batch, which is what batch invariance needs).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot
from torch import nn

import pytorch_grad_cam
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.registry import METHODS, get_method, method_table

NAMES = sorted(METHODS)
#: the methods the CNN matrix below runs; the attention methods refuse a CNN (NotApplicableError) and
#: run the same checks on vision transformers in tests/attention/test_attention_matrix.py
CNN_NAMES = [name for name in NAMES if not issubclass(METHODS[name].cls, AttentionCAM)]

ROOT = Path(__file__).resolve().parents[1]
#: The files that carry the method table (``python benchmarks/bench.py --costs --write-readme`` writes both).
TABLE_FILES = [ROOT / "README.md", ROOT / "docs" / "methods.md"]


def make(name: str, model: nn.Module, layers: list[nn.Module], **kwargs) -> BaseCAM:
    cls = METHODS[name].cls
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", 0)
    return cls(model, layers, **kwargs)


# -- the registry itself -------------------------------------------------------------------------


def table_cells(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.splitlines()]


@pytest.mark.parametrize("path", TABLE_FILES, ids=lambda path: path.name)
def test_readme_method_table_is_generated_from_the_registry(path):
    # Every cell but the cost column is compared with the registry's own table. The costs are
    # measurements (python benchmarks/bench.py --costs --write-readme), which no test can redo in
    # its time budget: only that each method has one, a positive number, is checked.
    text = path.read_text(encoding="utf-8")
    start, end = "<!-- methods:start -->\n", "\n<!-- methods:end -->"
    readme = table_cells(text[text.index(start) + len(start) : text.index(end)])
    registry = table_cells(method_table())
    stale = (
        f"{path.name}'s method table is stale: regenerate it with "
        "python benchmarks/bench.py --costs --write-readme"
    )
    assert len(readme) == len(registry), stale
    for got, want in zip(readme, registry):
        assert len(got) == len(want) == 6, stale
        assert got[:4] + got[5:] == want[:4] + want[5:], stale
    measured = {row[0].strip("`"): row[4] for row in readme[2:]}
    assert set(measured) == set(METHODS)
    unmeasured = sorted(name for name, cost in measured.items() if not re.fullmatch(r"\d+\.\d", cost))
    assert not unmeasured, f"methods without a measured cost: {unmeasured}"
    assert all(float(cost) > 0 for cost in measured.values())


def test_readme_and_docs_carry_the_same_costs():
    tables = [path.read_text(encoding="utf-8").split("<!-- methods:start -->")[1] for path in TABLE_FILES]
    assert len({table.split("<!-- methods:end -->")[0] for table in tables}) == 1


def test_every_method_is_exported_and_a_basecam():
    for name, info in METHODS.items():
        assert name == name.lower()
        assert issubclass(info.cls, BaseCAM)
        assert getattr(pytorch_grad_cam, info.cls.__name__) is info.cls
        assert info.cls.__doc__ and "http" in info.cls.__doc__, (
            f"{info.cls.__name__} docstring needs its paper link"
        )


def test_get_method():
    assert get_method("GradCAM++") is pytorch_grad_cam.GradCAMPlusPlus
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of: gradcam"):
        get_method("nope")


def test_names_and_classes_are_unique():
    classes = [info.cls for info in METHODS.values()]
    assert len(set(classes)) == len(classes)
    for name in METHODS:
        assert get_method(name.upper()) is METHODS[name].cls


@pytest.mark.parametrize("name", NAMES)
def test_exported_documented_and_cited(name):
    cls = METHODS[name].cls
    assert getattr(pytorch_grad_cam, cls.__name__) is cls
    assert cls.__name__ in pytorch_grad_cam.__all__
    assert issubclass(cls, BaseCAM)
    doc = inspect.getdoc(cls) or ""
    assert re.search(r"https?://", doc), f"{cls.__name__} docstring cites no link"
    assert re.search(r"``[^`]*=[^`]*``", doc), f"{cls.__name__} docstring states no formula"


#: pytorch-grad-cam 1.5.x module paths of the methods, targets and transforms of issue 5, and more.
PATHS_1_5 = {
    "pytorch_grad_cam.hirescam": ["HiResCAM"],
    "pytorch_grad_cam.grad_cam_elementwise": ["GradCAMElementWise"],
    "pytorch_grad_cam.fullgrad_cam": ["FullGrad"],
    "pytorch_grad_cam.kpca_cam": ["KPCA_CAM"],
    "pytorch_grad_cam.random_cam": ["RandomCAM"],
    "pytorch_grad_cam.fem": ["FEM"],
    "pytorch_grad_cam.seg_eigen_cam": ["SegEigenCAM"],
    "pytorch_grad_cam.shapley_cam": ["ShapleyCAM"],
    "pytorch_grad_cam.finer_cam": ["FinerCAM"],
    "pytorch_grad_cam.utils.model_targets": [
        "ClassifierOutputReST",
        "FasterRCNNBoxScoreTarget",
        "FinerWeightedTarget",
    ],
    "pytorch_grad_cam.utils.reshape_transforms": ["fasterrcnn_reshape_transform"],
    # the rest of 1.5.x's public names that this library has
    "pytorch_grad_cam": [
        "AblationLayer",
        "AblationLayerVit",
        "AblationLayerFasterRCNN",
        "RefineCAM",
        "SESS",
        "DeepFeatureFactorization",
        "run_dff_on_image",
    ],
    "pytorch_grad_cam.refine_cam": ["RefineCAM"],
    "pytorch_grad_cam.sess": ["SESS", "sliding_window", "window_starts"],
    "pytorch_grad_cam.feature_factorization.deep_feature_factorization": [
        "DeepFeatureFactorization",
        "run_dff_on_image",
        "dff",
    ],
    "pytorch_grad_cam.ablation_cam_multilayer": ["AblationCAM", "replace_layer_recursive"],
    "pytorch_grad_cam.guided_backprop": ["GuidedBackpropReLU", "GuidedBackpropReLUasModule"],
    "pytorch_grad_cam.utils.find_layers": [
        "replace_layer_recursive",
        "replace_all_layer_type_recursive",
        "find_layer_types_recursive",
        "find_layer_predicate_recursive",
    ],
    "pytorch_grad_cam.utils.image": [
        "scale_accross_batch_and_channels",
        "create_labels_legend",
        "show_factorization_on_image",
    ],
    "pytorch_grad_cam.sobel_cam": ["sobel_cam"],
    "pytorch_grad_cam.metrics.arcc": ["ARCC", "Coherency", "Complexity", "batch_pearson_coherency"],
    "pytorch_grad_cam.utils.svd_on_activations": [
        "get_2d_projection",
        "get_2d_projection_kernel",
        "get_2d_projection_with_sign_correction",
    ],
}


@pytest.mark.parametrize("module", sorted(PATHS_1_5))
def test_1_5_import_paths(module):
    imported = importlib.import_module(module)
    for name in PATHS_1_5[module]:
        value = getattr(imported, name)
        if inspect.isclass(value) and issubclass(value, BaseCAM):
            assert getattr(pytorch_grad_cam, name) is value


# -- the core guarantees, for every method --------------------------------------------------------


@pytest.mark.parametrize("name", CNN_NAMES)
def test_batch_equals_images_one_by_one(name, small_cnn, images):
    x = images(3, size=16)
    cam = make(name, small_cnn, [small_cnn.block2])
    batch = cam(x, [1, 3, 0] if METHODS[name].cls.uses_targets else None)
    assert batch.shape == (3, 16, 16) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 1 and batch.max() > 0.9
    for index, target in enumerate([1, 3, 0]):
        alone = cam(x[index : index + 1], [target] if METHODS[name].cls.uses_targets else None)
        np.testing.assert_allclose(batch[index : index + 1], alone, atol=1e-5)


@pytest.mark.filterwarnings("ignore:HiResCAM with eigen_smooth")
@pytest.mark.parametrize("name", CNN_NAMES)
def test_batch_invariance_with_smoothing(name, small_cnn, images):
    x = images(2, size=12, seed=1)
    cam = make(name, small_cnn, [small_cnn.block2[0], small_cnn.block2])
    batch = cam(x, aug_smooth=True, eigen_smooth=True)
    for index in range(2):
        alone = cam(x[index : index + 1], aug_smooth=True, eigen_smooth=True)
        np.testing.assert_allclose(batch[index : index + 1], alone, atol=1e-5)


@pytest.mark.parametrize("name", CNN_NAMES)
def test_grad_modes_and_frozen_models(name, small_cnn, images):
    x = images(2, size=12)
    targets = [0, 1] if METHODS[name].cls.uses_targets else None
    expected = make(name, small_cnn, [small_cnn.block2])(x, targets)
    with torch.no_grad():
        np.testing.assert_allclose(make(name, small_cnn, [small_cnn.block2])(x, targets), expected, atol=1e-6)
    with torch.inference_mode():
        x_inference = x.clone()
        got = make(name, small_cnn, [small_cnn.block2])(x_inference, targets)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    for p in small_cnn.parameters():
        p.requires_grad_(False)
    np.testing.assert_allclose(make(name, small_cnn, [small_cnn.block2])(x, targets), expected, atol=1e-6)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", CNN_NAMES)
def test_volumes(name, small_cnn3d):
    x = torch.randn(2, 3, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    cam = make(name, small_cnn3d, [small_cnn3d.block2])
    out = cam(x)
    assert out.shape == (2, 6, 6, 6)
    assert out.min() >= 0 and out.max() <= 1 and out.max() > 0.9
    np.testing.assert_allclose(out[1:], cam(x[1:]), atol=1e-5)


@pytest.mark.parametrize("name", CNN_NAMES)
def test_model_is_left_as_it_was(name, small_cnn, images):
    model = small_cnn
    model.train()
    model.block1.eval()
    for p in model.block1.parameters():
        p.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    before = model_snapshot(model)
    out = make(name, model, [model.block2])(images(2, size=12), aug_smooth=True)
    assert out.shape == (2, 12, 12)
    assert_same_model(before, model_snapshot(model))


class Bomb(nn.Module):
    """Raises in the forward pass, after the target layers have run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize("name", CNN_NAMES)
def test_model_is_left_as_it_was_on_errors(name, small_cnn, images):
    model = small_cnn.train()
    before = model_snapshot(model)
    x = images(2, size=12)
    cam = make(name, model, [model.block2])
    with pytest.raises(ValueError, match="targets has 1 entries but the batch has 2 images"):
        cam(x, [0])
    if METHODS[name].cls.uses_targets:
        with pytest.raises(ValueError, match="7 is out of range"):
            cam(x, [0, 7])
    assert_same_model(before, model_snapshot(model))
    model.pool = nn.Sequential(model.pool, Bomb())
    before = model_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        make(name, model, [model.block2])(x)
    assert_same_model(before, model_snapshot(model))


@pytest.mark.parametrize("name", CNN_NAMES)
def test_bad_arguments(name, small_cnn, images):
    cam = make(name, small_cnn, [small_cnn.block2])
    with pytest.raises(TypeError, match="input_tensor must be a torch.Tensor"):
        cam(np.zeros((1, 3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"input_tensor must be a batch of shape \(B, C, H, W\)"):
        cam(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError, match="aug_smooth must be True or False"):
        cam(images(1, size=8), aug_smooth="yes")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        make(name, "resnet", [small_cnn.block2])
