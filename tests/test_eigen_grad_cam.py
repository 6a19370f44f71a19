"""EigenGradCAM: golden values worked out by hand."""

import math

import numpy as np

from pytorch_grad_cam import EigenGradCAM


def test_golden_values(golden):
    model, x = golden
    # G * A for class 0: channel 0 [[1, 0], [0, 4]], channel 1 [[0, 0], [-2, 0]].
    # Positions as rows: (1, 0), (0, 0), (0, -2), (4, 0); mean (1.25, -0.5).
    # Centred: (-0.25, 0.5), (-1.25, 0.5), (-1.25, -1.5), (2.75, 0.5).
    # X^T X = [[10.75, 2.5], [2.5, 3]]: l = (13.75 + sqrt(13.75^2 - 4 * 26)) / 2, v ~ (2.5, l - 10.75).
    top = (13.75 + math.sqrt(13.75**2 - 4 * 26)) / 2
    v = np.array([2.5, top - 10.75])
    v = v / np.linalg.norm(v)
    centred = np.array([[-0.25, 0.5], [-1.25, 0.5], [-1.25, -1.5], [2.75, 0.5]])
    projection = centred @ v
    assert np.argmax(np.abs(projection)) == 3 and projection[3] > 0
    cam = np.maximum(projection, 0).reshape(2, 2)
    got = EigenGradCAM(model, [model.features])(x, targets=[0])
    np.testing.assert_allclose(got[0], cam / cam.max(), atol=1e-6)
