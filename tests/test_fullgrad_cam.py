"""FullGrad: golden values of the input- and bias-gradient maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import FullGrad
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.fullgrad_cam import layer_bias


class ConvBnHead(nn.Module):
    """x (1 channel, 1x3) -> conv 1x1 (w=2, b=1) -> batch norm (eval) -> y = <head, .>."""

    def __init__(self, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.bn = nn.BatchNorm2d(1) if batch_norm else nn.Identity()
        self.head = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(2.0)
            self.conv.bias.fill_(1.0)
            if batch_norm:
                # gamma (z - 1) / 2 + beta with gamma = 2, beta = 0.5: the identity minus 0.5
                self.bn.running_mean.fill_(1.0)
                self.bn.running_var.fill_(4.0 - self.bn.eps)
                self.bn.weight.fill_(2.0)
                self.bn.bias.fill_(0.5)
            self.head.weight.copy_(torch.tensor([[1.0, -1.0, 2.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x)).flatten(1))


X = torch.tensor([[[[1.0, 2.0, 3.0]]]])


def test_golden_value():
    model = ConvBnHead().eval()
    # dy/dbn = dy/dconv = [1, -1, 2] (the batch norm has slope 1), dy/dx = 2 [1, -1, 2]
    # input:   |dy/dx * x| = [2, 4, 12] -> [0, 0.2, 1]
    # conv:    |[1, -1, 2] * 1| = [1, 1, 2] -> [0, 0, 1]
    # bn:      |[1, -1, 2] * (0.5 - 2 * 1 / 2)| = [0.5, 0.5, 1] -> [0, 0, 1]
    cam = FullGrad(model)(X, [0])
    np.testing.assert_allclose(cam, [[[0.0, 0.2 / 3, 1.0]]], atol=1e-6)


def test_golden_value_without_batch_norm():
    model = ConvBnHead(batch_norm=False).eval()
    np.testing.assert_allclose(FullGrad(model)(X, [0]), [[[0.0, 0.1, 1.0]]], atol=1e-6)


def test_layer_bias():
    model = ConvBnHead()
    torch.testing.assert_close(layer_bias(model.conv), torch.tensor([1.0]))
    torch.testing.assert_close(layer_bias(model.bn), torch.tensor([-0.5]))
    plain = nn.BatchNorm2d(2, affine=False)
    with torch.no_grad():
        plain.running_mean.copy_(torch.tensor([1.0, -3.0]))
        plain.running_var.copy_(torch.tensor([4.0, 9.0]))
    expected = torch.tensor([-1 / math.sqrt(4 + 1e-5), 3 / math.sqrt(9 + 1e-5)])
    torch.testing.assert_close(layer_bias(plain), expected)
    assert layer_bias(nn.Conv2d(1, 1, 1, bias=False)) is None
    assert layer_bias(nn.BatchNorm2d(1, track_running_stats=False)) is None
    assert layer_bias(nn.Linear(2, 2)) is None


def test_layers_are_the_biased_conv_and_batch_norm_layers(small_cnn, images):
    expected = [small_cnn.block1[0], small_cnn.block1[1], small_cnn.block2[0], small_cnn.block2[1]]
    assert FullGrad(small_cnn).target_layers == expected
    # target layers given (as 1.5.x requires) or empty change nothing
    x = images(1, size=8)
    reference = FullGrad(small_cnn)(x, [2])
    for layers in ([], [small_cnn.block1], small_cnn.block2):
        cam = FullGrad(small_cnn, layers)
        assert cam.target_layers == expected
        np.testing.assert_array_equal(cam(x, [2]), reference)


class TwoResolutions(nn.Module):
    """x (1 channel, 1x4) -> conv 1x1 (w=1, b=1) -> mean of pixel pairs (1x2) -> conv 1x1 (w=1, b=1)
    -> y = <[1, 3], .>: a bias-gradient map at half the input's resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)
        self.pool = nn.AvgPool2d((1, 2))
        self.head = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.fill_(1.0)
                conv.bias.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[1.0, 3.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.pool(self.conv1(x))).flatten(1))


def test_golden_value_of_a_layer_at_half_resolution():
    """Each map is scaled at its layer's resolution, then resized (half-pixel bilinear), then summed."""
    # dy/dx = dy/dconv1 = [0.5, 0.5, 1.5, 1.5], dy/dconv2 = [1, 3]
    # input:  |dy/dx * x| = [0.5, 1, 4.5, 6] -> [0, 1/11, 8/11, 1]
    # conv1:  |dy/dconv1 * 1| -> [0, 0, 1, 1]
    # conv2:  |[1, 3] * 1| -> [0, 1] -> resized to 4 pixels: [0, 0.25, 0.75, 1]
    # sum [0, 15/44, 109/44, 3] -> [0, 5/44, 109/132, 1]
    cam = FullGrad(TwoResolutions().eval())(torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]]), [0])
    np.testing.assert_allclose(cam, [[[0.0, 5 / 44, 109 / 132, 1.0]]], atol=1e-6)


def test_eigen_smooth_is_the_principal_component_of_the_layer_maps():
    model = ConvBnHead().eval()
    maps = torch.tensor([[[[0.0, 0.2, 1.0]], [[0.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]]])
    expected = CF.scale_to_unit(torch.relu(CF.first_principal_component(maps)))
    np.testing.assert_allclose(FullGrad(model)(X, [0], eigen_smooth=True), expected.numpy(), atol=1e-6)


def test_3d(small_cnn3d):
    x = torch.randn(2, 3, 6, 6, 6)
    cam = FullGrad(small_cnn3d)
    assert cam.target_layers == [
        small_cnn3d.block1[0],
        small_cnn3d.block1[1],
        small_cnn3d.block2[0],
        small_cnn3d.block2[1],
    ]
    out = cam(x, [0, 4])
    assert out.shape == (2, 6, 6, 6)
    np.testing.assert_allclose(out[1:], cam(x[1:], [4]), atol=1e-6)


def test_bad_arguments(small_cnn):
    with pytest.raises(ValueError, match="does not take a reshape_transform"):
        FullGrad(small_cnn, [small_cnn.block2], reshape_transform=lambda t: t)
    with pytest.raises(TypeError, match="target_layers"):
        FullGrad(small_cnn, ["block2"])
    with pytest.raises(TypeError, match="model must be"):
        FullGrad("resnet")


def test_score_independent_of_input_warns():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.ones(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], 2) * 1

    with pytest.warns(UserWarning, match="do not depend on the input"):
        out = FullGrad(Constant())(torch.randn(1, 1, 3, 3), [0])
    assert np.all(out == 0)
