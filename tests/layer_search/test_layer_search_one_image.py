"""The layer search decides on one image: the same layer as the rule applied to the whole batch."""

from __future__ import annotations

import pytest
import torch
import torchvision
from test_layer_search_models import CASES, unzero
from torch import nn

from pytorch_grad_cam import layer_search
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.layer_search.layouts import known_prefix_tokens
from pytorch_grad_cam.layer_search.search import _candidates, _decide
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def torchvision_model(name):
    def build():
        torch.manual_seed(0)
        return getattr(torchvision.models, name)(num_classes=5)

    return build


ZOO = [
    (name, torchvision_model(name), (64, 64))
    for name in ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf")
] + [(c[0], c[1], c[2]) for c in CASES if c[0] in ("timm-vit-nonsquare", "timm-swin", "torchvision-vit")]


def whole_batch(model, x, targets):
    """The rule applied to the whole batch at once (every image's maps and gradients together)."""
    hint = known_prefix_tokens(model)
    found = _candidates(model, x, None if hint is None else hint[0])
    return _decide(model, x, targets, found, x.shape[0])


@pytest.mark.parametrize(("builder", "size"), [z[1:] for z in ZOO], ids=[z[0] for z in ZOO])
@pytest.mark.parametrize("with_targets", [False, True], ids=["top-class", "targets"])
def test_one_image_decides_what_the_whole_batch_decides(builder, size, with_targets):
    model = unzero(builder())
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(0))
    targets = [ClassifierOutputTarget(k) for k in (1, 3, 0)] if with_targets else None
    batches = []
    handle = model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        choice = find_target_layer(model, x, targets)
    finally:
        handle.remove()
    assert set(batches) == {1}  # the search never ran the batch
    reference = whole_batch(model, x, targets)
    assert (choice.name, choice.layout, choice.output_shape) == (
        reference.name,
        reference.layout,
        reference.output_shape,
    )


class Broadcast(nn.Module):
    """conv (no bias) -> ReLU -> conv (no bias) -> ``spread``: the pooled map copied back to the grid
    (a map whose positions never differ) -> classifier. A zero image makes every map zero: the
    gradient alone then picks ``spread``; an image whose maps vary picks ``conv2``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.spread = nn.Upsample(size=(8, 8))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv2(torch.relu(self.conv1(x))).mean(dim=(2, 3), keepdim=True)
        return self.fc(self.spread(pooled).mean(dim=(2, 3)))


def test_a_blank_first_image_passes_the_choice_to_the_next_image():
    model = Broadcast().eval()
    blank = torch.zeros(1, 3, 8, 8)
    assert find_target_layer(model, blank).name == "spread"  # by the gradient alone, not cached
    assert layer_search.cached_choice(model, blank) is None
    # image 0 blank, image 1 not: the batch's rule reads image 1's varying maps, so does the search
    x = torch.cat([blank, torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))])
    choice = find_target_layer(model, x)
    assert choice.name == whole_batch(model, x, None).name == "conv2"
    assert layer_search.cached_choice(model, x).name == "conv2"
