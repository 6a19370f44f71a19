"""The layer search never picks a module whose map is the model's own output (what is explained)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pytorch_grad_cam.layer_search import find_target_layer


class TinySegmenter(nn.Module):
    """conv (stride 2) -> 1x1 class conv -> upsampled to the input: ``{"out": (B, 3, H, W)}``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.classifier = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.classifier(torch.relu(self.features(x)))
        return {"out": F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)}


class OutputWrapper(nn.Module):
    """The README's segmentation tutorial wrapper: the inner network's ``"out"`` as a tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def test_a_wrapped_network_is_not_its_own_target_layer():
    # Unwrapped, the model itself and its class map (the output before upsampling) are skipped:
    # the feature map is chosen. Wrapped, the inner network returns the very tensor the wrapper
    # returns: the model's output again, which must be skipped the same way.
    x = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    net = TinySegmenter().eval()
    assert find_target_layer(net, x).name == "features"
    wrapped = OutputWrapper(net)
    choice = find_target_layer(wrapped, x)
    assert choice.name == "model.features" and choice.grid == (6, 8)
