"""Ablation layers: the multi-scale one ablates channel k of the level that holds it."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam.ablation_layer import AblationLayerFasterRCNN, AblationLayerMultiScale
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import multiscale_reshape_transform


def _levels():
    return [torch.arange(8.0).view(1, 2, 2, 2), torch.arange(3.0).view(1, 3, 1, 1) + 100]


@pytest.mark.parametrize("structure", ["list", "tuple", "dict"])
def test_channel_k_counts_through_the_levels(structure):
    levels = _levels()
    output = {"list": list, "tuple": tuple}.get(structure, lambda v: OrderedDict(zip("ab", v)))(levels)
    layer = AblationLayerMultiScale(value=-5.0)
    assert layer.layout(output, None) is None
    ablated = layer(output, torch.tensor([-1, 1, 3]), None)  # none; level 0 channel 1; level 1 channel 1
    assert type(ablated) is type(output)
    first, second = ablated.values() if structure == "dict" else ablated
    assert first.shape == (3, 2, 2, 2) and second.shape == (3, 3, 1, 1)
    expected_first = levels[0].repeat(3, 1, 1, 1)
    expected_first[1, 1] = -5.0
    expected_second = levels[1].repeat(3, 1, 1, 1)
    expected_second[2, 1] = -5.0
    torch.testing.assert_close(first, expected_first)
    torch.testing.assert_close(second, expected_second)
    with pytest.raises(ValueError, match="channel 5 does not exist: there are 5 channels"):
        layer(output, torch.tensor([5]), None)


def test_the_old_name_keeps_its_value_and_rejects_a_tensor():
    assert isinstance(AblationLayerFasterRCNN(), AblationLayerMultiScale)
    assert AblationLayerFasterRCNN().value == -1000.0
    with pytest.raises(ValueError, match="ablates a dict or list of feature maps"):
        AblationLayerFasterRCNN().layout(torch.zeros(1, 2, 3, 3), None)


class TwoScaleNet(nn.Module):
    """``neck`` returns maps at strides 1 and 2 (the input, and its 2x2 sums); the score is a fixed
    weighted sum of both: removing a channel changes it by a number written down below."""

    def __init__(self) -> None:
        super().__init__()
        self.neck = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.neck([x, nn.functional.avg_pool2d(x, 2) * 4])
        return torch.stack([levels[0].sum(dim=(1, 2, 3)) + 2 * levels[1][:, 0].sum(dim=(1, 2))] * 2, dim=1)


def test_ablationcam_on_a_list_of_maps_golden():
    model = TwoScaleNet().eval()
    x = torch.ones(1, 1, 4, 4)
    cam = AblationCAM(
        model,
        [model.neck],
        reshape_transform=multiscale_reshape_transform,
        ablation_layer=AblationLayerMultiScale(value=0.0),
    )
    activations = multiscale_reshape_transform([x, torch.full((1, 1, 2, 2), 4.0)])
    weights = cam.get_cam_weights(x, model.neck, [ClassifierOutputTarget(0)], activations, None)
    # score 16 + 2 * 16 = 48; without level 0 it is 32 (weight 16 / 48), without level 1 it is 16 (32 / 48)
    torch.testing.assert_close(weights, torch.tensor([[1 / 3, 2 / 3]]))
    assert cam(x, [0]).shape == (1, 4, 4)
