"""The 1.5.x projection helpers: numpy faces of the principal-component functions."""

import numpy as np
import pytest
import torch

from pytorch_grad_cam.utils.svd_on_activations import (
    get_2d_projection,
    get_2d_projection_kernel,
    get_2d_projection_with_sign_correction,
)

# (B=1, C=2, h=1, w=3): positions (0, 0), (0, 0), (3, 4). Centred: (-1, -4/3) twice and (2, 8/3),
# all along (3, 4) / 5, so the projection is (-5/3, -5/3, 10/3), signed so that 10/3 is positive.
ACTIVATIONS = np.array([[[[0.0, 0.0, 3.0]], [[0.0, 0.0, 4.0]]]], dtype=np.float32)
EXPECTED = np.array([[[-5 / 3, -5 / 3, 10 / 3]]], dtype=np.float32)


@pytest.mark.parametrize(
    "project",
    [
        get_2d_projection,
        get_2d_projection_with_sign_correction,
        lambda a: get_2d_projection_kernel(a, "linear"),
    ],
)
def test_projections_by_hand(project):
    for sign in (1, -1):  # the sign of the activations does not flip the map
        out = project(sign * ACTIVATIONS)
        assert out.dtype == np.float32 and out.shape == (1, 1, 3)
        np.testing.assert_allclose(out, EXPECTED, atol=1e-5)
    np.testing.assert_allclose(project(torch.from_numpy(ACTIVATIONS)), EXPECTED, atol=1e-5)


def numpy_projection(activations: np.ndarray) -> np.ndarray:
    """The definition with numpy's SVD (float64): centre the (positions, C) matrix, project it on
    its first right singular vector, and flip the map when ``|min| > |max|`` (Seg-Eigen-CAM Eq. 13)."""
    maps = []
    for sample in activations.astype(np.float64):
        matrix = sample.reshape(sample.shape[0], -1).T
        matrix = matrix - matrix.mean(axis=0)
        _, _, vh = np.linalg.svd(matrix, full_matrices=False)
        projection = matrix @ vh[0]
        if abs(projection.min()) > abs(projection.max()):
            projection = -projection
        maps.append(projection.reshape(sample.shape[1:]))
    return np.stack(maps)


def test_sign_correction_against_numpy_svd():
    activations = np.random.default_rng(0).normal(size=(6, 5, 4, 4)).astype(np.float32)
    expected = numpy_projection(activations)
    # every map's sign is decided: its largest magnitude is clearly on one side
    flat = expected.reshape(6, -1)
    assert (np.abs(flat.max(axis=1)) - np.abs(flat.min(axis=1)) > 1e-2).all()
    for project in (get_2d_projection_with_sign_correction, get_2d_projection):
        out = project(activations)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
        flat = out.reshape(6, -1)
        assert (np.abs(flat.max(axis=1)) >= np.abs(flat.min(axis=1))).all()


def test_kernel_projection_takes_the_kernel_and_gamma():
    activations = np.random.default_rng(1).normal(size=(2, 3, 2, 2)).astype(np.float32)
    rbf = get_2d_projection_kernel(activations, kernel="rbf", gamma=0.5)
    assert rbf.shape == (2, 2, 2) and not np.allclose(rbf, get_2d_projection_kernel(activations))
    with pytest.raises(ValueError, match="kernel must be one of"):
        get_2d_projection_kernel(activations, kernel="laplace")
