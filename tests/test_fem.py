"""FEM: golden values of the k-sigma weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam import FEM
from pytorch_grad_cam import functional as CF

# Channel 0 = 3 x, channel 1 = -x for x = [0, 1, 2, 9] (a 1x4 image).
X = torch.tensor([[[[0.0, 1.0, 2.0, 9.0]]]])


def test_weights_golden():
    acts = torch.cat([3 * X, -X], dim=1)
    # channel 0: mean 9, population std 3 * 3.5355 -> k=0.5: threshold 14.30; only 27 exceeds it
    # channel 1: mean -3, std 3.5355 -> threshold -1.232; 0 and -1 exceed it
    torch.testing.assert_close(CF.fem_weights(acts, 0.5), torch.tensor([[0.25, 0.5]]))
    # k=1: channel 1's threshold 0.536 is above every value
    torch.testing.assert_close(CF.fem_weights(acts, 1.0), torch.tensor([[0.25, 0.0]]))
    # a constant channel never exceeds its own mean (strict inequality)
    torch.testing.assert_close(CF.fem_weights(torch.ones(1, 1, 2, 2), 0.0), torch.tensor([[0.0]]))


def test_golden_value(linear_head_net):
    model = linear_head_net([3.0, -1.0], [[1.0] * 8])
    cam = FEM(model, [model.features], k=0.5)(X)
    # 0.25 * 3x + 0.5 * (-x) = 0.25 x -> x / 9
    np.testing.assert_allclose(cam, [[[0.0, 1 / 9, 2 / 9, 1.0]]], atol=1e-6)
    # eigen_smooth has no effect (as in 1.5.x)
    np.testing.assert_allclose(FEM(model, [model.features], k=0.5)(X, eigen_smooth=True), cam, atol=1e-7)


def test_3d_weights():
    acts = torch.zeros(1, 1, 2, 2, 2)
    acts[0, 0, 1, 1, 1] = 8.0
    # mean 1, population std sqrt(7) -> threshold 3.65 for k=1: one position of eight
    torch.testing.assert_close(CF.fem_weights(acts, 1.0), torch.tensor([[0.125]]))


@pytest.mark.parametrize("k", ["2", True, None])
def test_bad_k(linear_head_net, k):
    model = linear_head_net([1.0], [[1.0] * 4])
    with pytest.raises(TypeError, match="k must be"):
        FEM(model, [model.features], k=k)
