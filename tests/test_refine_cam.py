"""RefineCAM: the product of the per-layer maps, by hand and against its base method."""

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, RefineCAM, ScoreCAM
from pytorch_grad_cam.refine_cam import product_of_maps


def test_product_of_maps_by_hand():
    maps = torch.tensor([[[[0.0, 0.5], [1.0, 1.0]]], [[[1.0, 0.5], [0.5, 0.0]]]])  # (L=2, B=1, 2, 2)
    # product (0, 0.25, 0.5, 0), min-max scaled: (0, 0.5, 1, 0)
    torch.testing.assert_close(
        product_of_maps(maps), torch.tensor([[[0.0, 0.5], [1.0, 0.0]]]), atol=1e-6, rtol=0
    )


def test_equals_the_product_of_its_base_method(small_cnn, images):
    x = images(2, size=16)
    layers = [small_cnn.block1, small_cnn.block2]
    got = RefineCAM(small_cnn, layers, base_method=GradCAM)(x, [1, 3])
    maps = [GradCAM(small_cnn, [layer])(x, [1, 3]) for layer in layers]
    assert got.shape == (2, 16, 16) and got.dtype == np.float32
    # the numbers of the numpy round trip, exactly (the maps now stay tensors until the result)
    np.testing.assert_array_equal(got, product_of_maps(torch.from_numpy(np.stack(maps))).numpy())
    assert got.max() == pytest.approx(1.0, abs=1e-5)
    # smoothing options reach every layer's call
    smooth = RefineCAM(small_cnn, layers, base_method=GradCAM)(x, [1, 3], eigen_smooth=True, aug_smooth=True)
    maps = [GradCAM(small_cnn, [layer])(x, [1, 3], aug_smooth=True, eigen_smooth=True) for layer in layers]
    np.testing.assert_array_equal(smooth, product_of_maps(torch.from_numpy(np.stack(maps))).numpy())


def test_maps_stay_tensors_until_the_result(small_cnn, images, count_numpy_conversions):
    refine = RefineCAM(small_cnn, [small_cnn.block1, small_cnn.block2], base_method=GradCAM)
    with count_numpy_conversions() as counts:
        refine(images(2, size=16), [1, 3])
    assert counts == {"numpy": 1, "from_numpy": 0}  # the public result only


def test_default_base_method_and_options(used_model, images):
    before = model_snapshot(used_model)
    refine = RefineCAM(used_model, [used_model.block1, used_model.block2])
    assert all(type(cam) is GradCAMPlusPlus for cam in refine.base_cam_per_layer)
    out = refine(images(1, size=16))
    assert np.isfinite(out).all() and out.max() > 0.99
    assert_same_model(before, model_snapshot(used_model))
    scored = RefineCAM(used_model, [used_model.block2], base_method=ScoreCAM, batch_size=7)
    assert scored.base_cam_per_layer[0].batch_size == 7


def test_bad_arguments(small_cnn):
    with pytest.raises(TypeError, match="base_method must be a CAM class"):
        RefineCAM(small_cnn, [small_cnn.block2], base_method="gradcam")
    with pytest.raises(ValueError, match="target_layers is empty"):
        RefineCAM(small_cnn, [])
