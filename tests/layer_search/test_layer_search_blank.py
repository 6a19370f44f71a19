"""A blank image (every candidate map constant over its grid) still gets a layer, and is not cached."""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.layer_search import cached_choice, find_target_layer


class Net(nn.Module):
    """conv (no bias) -> ReLU -> conv (no bias) -> pooled classifier: a zero image gives zero maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv2(torch.relu(self.conv1(x))).mean(dim=(2, 3)))


def test_a_blank_image_gets_the_layer_by_the_gradient_alone_and_is_not_cached():
    model = Net().eval()
    blank = torch.zeros(1, 3, 8, 8)
    # every map is zero: "positions differ" cannot decide; the gradient rule alone picks conv2
    # (this raised "none of the 2 modules ... differs between its grid positions")
    assert find_target_layer(model, blank).name == "conv2"
    assert cached_choice(model, blank) is None
    maps = GradCAM(model)(blank, [0])
    assert maps.shape == (1, 8, 8) and float(abs(maps).max()) == 0.0
    # a real image is searched (and cached) as usual
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert find_target_layer(model, image).name == "conv2"
    assert cached_choice(model, image).name == "conv2"
