"""GradCAM++: golden values worked out by hand."""

import numpy as np
import torch

from pytorch_grad_cam import GradCAMPlusPlus


def test_golden_values(golden):
    model, x = golden
    # sum A_0 = 10, sum A_1 = 1. Class 0:
    # channel 0: G = 1 at (0,0) and (1,1): a = 1 / (2 + 10 + 1e-6); w_0 = 2 a = 1/6 (to 1e-7)
    # channel 1: G = 2 at (0,0): a = 4 / (8 + 1 * 8 + 1e-6) = 1/4, relu(G) a = 1/2;
    #            G = -1 at (1,0): relu(G) = 0; G = 0 elsewhere: a = 0. w_1 = 1/2
    # CAM = A_0 / 6 + A_1 / 2 = [[1/6, -1/6], [3/2, 2/3]] -> ReLU -> / 1.5
    expected = np.array([[1 / 9, 0.0], [1.0, 4 / 9]])
    cam = GradCAMPlusPlus(model, [model.features])(x, targets=[0])
    np.testing.assert_allclose(cam[0], expected, atol=1e-6)


def test_zero_gradients_give_zero_map(mixing_head_net):
    model = mixing_head_net([[0.0] * 8])
    x = torch.ones(1, 2, 2, 2)
    cam = GradCAMPlusPlus(model, [model.features])(x, targets=[0])
    assert not np.isnan(cam).any()
    np.testing.assert_array_equal(cam, np.zeros((1, 2, 2), dtype=np.float32))
