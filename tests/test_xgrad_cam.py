"""XGradCAM: golden values worked out by hand."""

import numpy as np

from pytorch_grad_cam import XGradCAM


def test_golden_values(golden):
    model, x = golden
    # w_0 = sum(G_0 A_0) / sum(A_0) = (1 + 4) / 10 = 0.5
    # w_1 = sum(G_1 A_1) / sum(A_1) = (2 * 0 + (-1) * 2) / 1 = -2
    # CAM = 0.5 A_0 - 2 A_1 = [[0.5, 3], [-2.5, 2]] -> ReLU [[0.5, 3], [0, 2]] -> / 3
    expected = np.array([[1 / 6, 1.0], [0.0, 2 / 3]])
    cam = XGradCAM(model, [model.features])(x, targets=[0])
    np.testing.assert_allclose(cam[0], expected, atol=1e-6)
