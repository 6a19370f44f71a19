"""A map passed on unchanged through a chain of modules is named at the module that produced it.

Two kinds of pass-through alternate in HuggingFace MobileViT's segmentation head: a module that
returns its child's map (``same_as``: a wrapper, ``ASPP`` returning its dropout's output) and a
module that returns its input as is (``passes_on``: ``Dropout`` in eval mode). Followed one kind
only, the search stopped at an inner ``Dropout``; both are followed until neither applies.
"""

from __future__ import annotations

import torch
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class ConvLayer(nn.Module):
    """conv -> ReLU; returns the ReLU's map (same_as the ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Pyramid(nn.Module):
    """project -> Dropout; returns the Dropout's output (same_as the Dropout, which passes it on)."""

    def __init__(self) -> None:
        super().__init__()
        self.project = ConvLayer()
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.project(x))


class Segmenter(nn.Module):
    """A fixed 3-channel 2x2 map through the head: ``pyramid`` -> Dropout2d -> a 1x1 class conv pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.pyramid = Pyramid()
        self.dropout = nn.Dropout2d(0.5)
        self.classifier = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.pyramid.project.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.classifier.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]).view(2, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pyramid(x))).mean(dim=(2, 3))


def test_the_chain_of_wrappers_and_dropouts_is_named_at_its_producer():
    model = Segmenter().eval()
    # (1, 3, 2, 2)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [0.0, 0.0]], [[5.0, 6.0], [7.0, 8.0]]]])
    choice = find_target_layer(model, x)
    assert choice.name == "pyramid.project.act"  # not "pyramid.dropout" nor "dropout"
    assert choice.layer is model.pyramid.project.act
    # class 1 = 2 x the mean of channel 1: GradCAM weight 2/4 on the map [[4, 0], [0, 0]]
    with GradCAM(model) as cam:
        got = cam(x, targets=[ClassifierOutputTarget(1)])
    assert got.shape == (1, 2, 2)
    assert got[0].round(decimals=6).tolist() == [[1.0, 0.0], [0.0, 0.0]]
