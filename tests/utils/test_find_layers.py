"""The 1.5.x helpers that find and replace submodules."""

import torch
from torch import nn

from pytorch_grad_cam.utils.find_layers import (
    find_layer_predicate_recursive,
    find_layer_types_recursive,
    replace_all_layer_type_recursive,
    replace_layer_recursive,
)


class WideConv(nn.Conv2d):
    """A subclass: not an ``nn.Conv2d`` by exact type."""


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Sequential(nn.ReLU())),
        WideConv(4, 2, 1),
    )


def test_find_by_type_and_predicate_depth_first():
    model = make_model()
    convs = find_layer_types_recursive(model, [nn.Conv2d])
    assert convs == [model[0], model[1][1]]  # the subclass is not listed
    assert find_layer_types_recursive(model, [nn.ReLU, WideConv]) == [model[1][0], model[1][2][0], model[2]]
    sequentials = find_layer_predicate_recursive(model, lambda m: isinstance(m, nn.Sequential))
    assert sequentials == [model[1], model[1][2]]  # the model itself is not listed
    assert find_layer_predicate_recursive(model, lambda m: False) == []


def test_replace_one_layer():
    model = make_model()
    inner = model[1][1]
    new = nn.Identity()
    assert replace_layer_recursive(model, inner, new) is True
    assert model[1][1] is new and find_layer_types_recursive(model, [nn.Conv2d]) == [model[0]]
    assert replace_layer_recursive(model, inner, nn.Identity()) is False  # no longer there


def test_replace_every_layer_of_a_type():
    model = make_model()
    gelu = nn.GELU()
    replace_all_layer_type_recursive(model, nn.ReLU, gelu)
    assert model[1][0] is gelu and model[1][2][0] is gelu
    assert find_layer_types_recursive(model, [nn.ReLU]) == []
    replace_all_layer_type_recursive(model, nn.Conv2d, nn.Identity())  # subclasses too
    assert find_layer_predicate_recursive(model, lambda m: isinstance(m, nn.Conv2d)) == []
    assert model(torch.ones(1, 3, 2, 2)).shape == (1, 3, 2, 2)
