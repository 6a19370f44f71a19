"""EigenCAM: golden values worked out by hand."""

import math

import numpy as np

from pytorch_grad_cam import EigenCAM


def test_golden_values(golden):
    model, x = golden
    # Positions as rows (A_0, A_1): (1, 0), (2, -1), (3, 2), (4, 0); mean (2.5, 0.25).
    # Centred: (-1.5, -0.25), (-0.5, -1.25), (0.5, 1.75), (1.5, -0.25).
    # X^T X = [[5, 1.5], [1.5, 4.75]]: top eigenvalue l = (9.75 + sqrt(9.75^2 - 4 * 21.5)) / 2,
    # eigenvector v ~ (1.5, l - 5).
    top = (9.75 + math.sqrt(9.75**2 - 4 * 21.5)) / 2
    v = np.array([1.5, top - 5])
    v = v / np.linalg.norm(v)
    centred = np.array([[-1.5, -0.25], [-0.5, -1.25], [0.5, 1.75], [1.5, -0.25]])
    projection = centred @ v  # the largest magnitude (position (1,0)) is positive: no flip
    assert np.argmax(np.abs(projection)) == 2 and projection[2] > 0
    cam = np.maximum(projection, 0).reshape(2, 2)
    expected = cam / cam.max()
    # EigenCAM ignores targets and needs no gradients.
    got = EigenCAM(model, [model.features])(x)
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    np.testing.assert_allclose(expected, [[0.0, 0.0], [1.0, 0.60185]], atol=1e-4)


def test_constant_activations_give_zero_map(golden):
    model, x = golden
    cam = EigenCAM(model, [model.features])(x * 0 + 3)
    np.testing.assert_array_equal(cam, np.zeros((1, 2, 2), dtype=np.float32))
