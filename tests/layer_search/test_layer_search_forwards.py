"""The search's choice and its forwards on small models of each kind: a recorded forward and one
forward for the gradient rule (a ViT's first group reaches back to its last attention's input)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from test_layer_search_models import CASES, unzero

from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.layer_search import gradient as layer_gradient


def classifier(name):
    def build():
        torch.manual_seed(0)
        return torchvision.models.get_model(name, weights=None, num_classes=5)

    return build


def segmenter():
    from torchvision.models import segmentation

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)


def video_net():
    from torchvision.models import video

    torch.manual_seed(0)
    return video.r3d_18(num_classes=3)


BY_ID = {c[0]: c[1] for c in CASES}

#: (id, builder, input (C, *S), the layer chosen before the search's cost was cut, its layout)
PINNED = [
    ("resnet18", classifier("resnet18"), (3, 64, 64), "layer4.1", "channels-first 2x2"),
    ("mobilenet", classifier("mobilenet_v3_small"), (3, 64, 64), "features.12.2", "channels-first 2x2"),
    ("timm-vit", BY_ID["timm-vit-nonsquare"], (3, 16, 24), "blocks.1.norm1", "tokens (1 prefix + 4x6)"),
    (
        "torchvision-vit",
        BY_ID["torchvision-vit"],
        (3, 16, 16),
        "encoder.layers.encoder_layer_1.ln_1",
        "tokens (1 prefix + 4x4)",
    ),
    ("timm-swin", BY_ID["timm-swin"], (3, 32, 32), "norm", "channels-last 4x4"),
    ("lraspp-segmenter", segmenter, (3, 64, 64), "classifier.cbr.2", "channels-first 4x4"),
    ("r3d_18-video", video_net, (3, 8, 32, 32), "layer4.1.relu", "channels-first 1x2x2"),
]


def searched(model, x):
    """The choice and how many forwards of the model the search ran."""
    batches = []
    handle = model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        choice = find_target_layer(model, x)
    finally:
        handle.remove()
    return choice, batches


@pytest.mark.parametrize(
    ("builder", "shape", "layer", "layout"), [p[1:] for p in PINNED], ids=[p[0] for p in PINNED]
)
def test_the_choice_in_two_one_image_forwards(builder, shape, layer, layout):
    model = unzero(builder())
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    choice, batches = searched(model, x)
    assert (choice.name, choice.layout.describe()) == (layer, layout)
    assert batches == [1, 1]  # before: 1 + 5 (the timm ViT), 1 + 4 (the torchvision ViT)


def test_a_vit_without_the_attention_reach_takes_more_forwards_to_the_same_layer(monkeypatch):
    # the groups change the cost, not the answer: one map at a time, doubling, as before
    monkeypatch.setattr(layer_gradient, "MAX_FIRST_MAPS", 0)
    model = unzero(BY_ID["torchvision-vit"]())
    choice, batches = searched(model, torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert choice.name == "encoder.layers.encoder_layer_1.ln_1"
    # maps after ln_1 (the MLP's are distinct; dropouts, containers and the
    # encoder pass theirs on): groups of 1, 2, 4 maps miss it, the group of 8 reaches it
    assert batches == [1] * 5
