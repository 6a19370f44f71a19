"""pytorch_grad_cam.errors: which refusals are NotApplicableError (a method that cannot explain this layer
or model by its definition), and which argument errors stay plain ValueError/TypeError."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytorch_grad_cam import CAM, DeepFeatureFactorization, GradCAM
from pytorch_grad_cam.errors import NotApplicableError


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_cam_on_a_layer_that_does_not_feed_the_fc_layer(small_cnn):
    with pytest.raises(NotApplicableError, match="fc_layer has 16 input features but the target layer has 8"):
        CAM(small_cnn, [small_cnn.block1])(_x(), [0])


def test_cam_on_a_model_without_one_final_linear_layer(small_cnn):
    two_heads = nn.Sequential(small_cnn, nn.Linear(5, 2))
    with pytest.raises(NotApplicableError, match="CAM needs the final linear layer and the model has 2"):
        CAM(two_heads, [small_cnn.block2])


def test_a_cam_of_a_layer_whose_output_is_not_a_map(small_cnn):
    """The flattened (B, C) features after the pool: no spatial axes to weigh."""
    model = nn.Sequential(small_cnn.block1, small_cnn.block2, small_cnn.pool, nn.Flatten(), small_cnn.fc)
    with pytest.raises(NotApplicableError, match=r"has shape \(1, 16\) but a CAM of input"):
        GradCAM(model, [model[3]])(_x(), [0])


def test_dff_of_a_layer_whose_output_is_not_a_map(small_cnn):
    model = nn.Sequential(small_cnn.block1, small_cnn.block2, small_cnn.pool, nn.Flatten(), small_cnn.fc)
    with pytest.raises(NotApplicableError, match=r"needs the target layer's output as a \(B, C, h, w\)"):
        DeepFeatureFactorization(model, model[3], reshape_transform=lambda t: t[:, :1].sum())(_x(), 2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: CAM(m, [m.block2])(_x(), [7]), ValueError, "class 7 is out of range"),
        (lambda m: GradCAM(m, [m.block2])(_x(), [0, 1]), ValueError, "targets has 2 entries"),
        (lambda m: GradCAM(m, [m.block2])(_x(), ["cat"]), TypeError, r"targets\[0\] must be an int"),
        (lambda m: GradCAM(m, [nn.Conv2d(3, 3, 1)])(_x()), ValueError, "never ran in the model's forward"),
    ],
)
def test_argument_errors_are_not_refusals(small_cnn, call, error, match):
    with pytest.raises(error, match=match) as raised:
        call(small_cnn)
    assert not isinstance(raised.value, NotApplicableError)
