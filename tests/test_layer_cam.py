"""LayerCAM: golden values worked out by hand."""

import numpy as np

from pytorch_grad_cam import LayerCAM


def test_golden_values(golden):
    model, x = golden
    # relu(G_0) A_0 = [[1, 0], [0, 4]]; relu(G_1) A_1 = [[2 * 0, 0], [0, 0]] = 0
    # CAM = [[1, 0], [0, 4]] -> / 4
    expected = np.array([[0.25, 0.0], [0.0, 1.0]])
    cam = LayerCAM(model, [model.features])(x, targets=[0])
    np.testing.assert_allclose(cam[0], expected, atol=1e-6)


def test_golden_values_eigen_smooth(golden):
    model, x = golden
    # eigen_smooth reduces relu(G) * A = channel 0 [[1, 0], [0, 4]], channel 1 zero.
    # Positions as rows (c0, c1): (1,0) (0,0) (0,0) (4,0); centred c0: -0.25 -1.25 -1.25 2.75.
    # The first component is the c0 axis; the projection is the centred c0 column,
    # largest magnitude 2.75 already positive. ReLU -> [[0, 0], [0, 2.75]] -> / 2.75
    cam = LayerCAM(model, [model.features])(x, targets=[0], eigen_smooth=True)
    np.testing.assert_allclose(cam[0], [[0.0, 0.0], [0.0, 1.0]], atol=1e-6)
