"""Video: (B, C, T, H, W) inputs whose time axis is downsampled differently from space (issue 20,
item 3; docs/layer-rule.md): the map keeps time, channels-last 5-D outputs (Swin3D) read as such."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.layer_search.layouts import volume_misfit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class FrameNet(nn.Module):
    """Space halved twice, time never: channel 0 is the red of each pixel of each frame; class 0
    reads channel 0's mean, class 1 channel 1's (green)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, 2, (1, 2, 2), stride=(1, 2, 2)), nn.ReLU())
        self.pool = nn.AvgPool3d((1, 2, 2))
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[0, 0] = 0.25
            self.features[0].weight[1, 1] = 0.25
            self.features[0].bias.zero_()
            self.fc.weight.copy_(torch.eye(2))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).mean(dim=(2, 3, 4)))


def test_volume_misfit_lets_time_have_its_own_stride():
    assert volume_misfit((8, 4, 4), (8, 16, 16)) == 0.0  # time not downsampled, space by 4
    assert volume_misfit((1, 2, 2), (8, 64, 64)) == 0.0  # time reduced to one frame
    assert volume_misfit((4, 1, 2), (8, 64, 64)) is None  # under 2 cells along a spatial axis
    assert volume_misfit((9, 4, 4), (8, 16, 16)) is None  # more frames than the input


def test_only_the_frame_with_the_evidence_lights_up():
    x = torch.zeros(1, 3, 6, 16, 16)
    x[:, 1] = 0.5  # green everywhere
    x[:, 0, 3, 4:12, 4:12] = 1.0  # red only in frame 3
    model = FrameNet().eval()
    choice = find_target_layer(model, x)
    assert choice.name == "pool" and choice.grid == (6, 4, 4)
    maps = GradCAM(model)(x, targets=[ClassifierOutputTarget(0)])
    assert maps.shape == (1, 6, 16, 16)
    per_frame = maps[0].sum(axis=(1, 2))
    assert per_frame[3] > 0 and float(per_frame.sum() - per_frame[3]) == 0.0


@pytest.mark.parametrize(
    "name, layer, grid",
    [("r3d_18", "layer4.1.relu", (1, 4, 4)), ("swin3d_t", "norm", (4, 2, 2))],
)
def test_torchvision_video_models(name, layer, grid):
    from torchvision.models import video

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(video, name)(num_classes=3).eval()
    x = torch.rand(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    choice = find_target_layer(model, x)
    assert (choice.name, choice.grid) == (layer, grid)
    maps = GradCAM(model)(x, targets=[ClassifierOutputTarget(1)])
    assert maps.shape == (1, 8, 64, 64) and maps.max() > 0.5
