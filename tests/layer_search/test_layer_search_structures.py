"""Outputs of any structure pass through the capture and the search (issue 20, item 4).

Each model hides its feature map's module behind a submodule returning one kind of structure
(``torch.Size``, a named tuple, a HuggingFace ``ModelOutput``, a list, a dict, a non-tensor leaf);
the search must pick the same layer and the CAM give the same map as on the plain model.
"""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam._core.outputs import map_tensors
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

Pair = namedtuple("Pair", ["x", "size"])


class Subclass(list):
    """A list subclass (kept as such)."""


def wrap(kind: str, x: torch.Tensor):
    if kind == "size":
        return (x, x.shape[2:])  # timm mvitv2's patch embedding: (x, torch.Size)
    if kind == "namedtuple":
        return Pair(x, x.shape)
    if kind == "modeloutput":
        return BaseModelOutput(last_hidden_state=x)
    if kind == "list":
        return Subclass([x, "text", 3])
    if kind == "dict":
        return {"x": x, "none": None, "size": x.shape}
    raise AssertionError(kind)


def unwrap(kind: str, out):
    if kind == "modeloutput":
        return out.last_hidden_state
    if kind == "dict":
        return out["x"]
    return out[0]


class Embed(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return wrap(self.kind, self.conv(x))


class Net(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.kind = kind
        self.embed = Embed(kind)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        feat = unwrap(self.kind, self.embed(x)).relu()
        return self.fc(feat.mean(dim=(2, 3)))


KINDS = ["size", "namedtuple", "modeloutput", "list", "dict"]


@pytest.mark.parametrize("kind", KINDS)
def test_map_tensors_rebuilds_every_kind(kind):
    x = torch.arange(8.0).view(1, 2, 2, 2)
    out = wrap(kind, x)
    doubled = map_tensors(lambda t: t * 2, out)
    assert type(doubled) is type(out)
    assert unwrap(kind, doubled).tolist() == (x * 2).tolist()
    untouched = map_tensors(lambda t: t, out)
    assert untouched is out  # nothing changed: the very object
    if kind == "size":
        assert doubled[1] is out[1] and isinstance(doubled[1], torch.Size)
    if kind == "list":
        assert list(doubled)[1:] == ["text", 3]
    if kind == "dict":
        assert doubled["none"] is None and doubled["size"] == torch.Size([1, 2, 2, 2])


@pytest.mark.parametrize("kind", KINDS)
def test_search_and_cam_through_every_kind(kind):
    model = Net(kind).eval()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    choice = find_target_layer(model, x)
    assert choice.name == "embed.conv"
    with GradCAM(model) as cam:
        got = cam(x, targets=[ClassifierOutputTarget(1)])
    with GradCAM(model, target_layers=[model.embed.conv]) as cam:
        want = cam(x, targets=[ClassifierOutputTarget(1)])
    assert got.shape == (1, 8, 8) and float(abs(got - want).max()) == 0.0
