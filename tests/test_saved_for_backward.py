"""No hidden graph: the bytes a CAM call saves for backward stay within the graph after its target layer.

Counted with ``torch.autograd.graph.saved_tensors_hooks`` (every tensor an autograd node saves,
parameters left out: they are held by the model anyway). The bound is measured, not guessed: the
same model's full training-style forward (input requiring grad) on the same batch, counted the same
way, split at the moment the target layer returns: what is saved after it is the graph from the
target layer onwards, all a gradient CAM needs.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from pytorch_grad_cam import GradCAM, LeGrad
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class SavedBytes:
    """Context: the bytes of the non-parameter tensors saved for backward inside it."""

    def __init__(self, model: nn.Module) -> None:
        self.params = {p.data_ptr() for p in model.parameters()}
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.data_ptr() not in self.params:
            self.total += tensor.numel() * tensor.element_size()
        return tensor

    def __enter__(self) -> SavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def full_graph(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> tuple[int, int]:
    """(all bytes a training-style forward saves, the bytes it saves after ``layer`` returns plus the
    output's: the target scores are read from the output, which a score's backward may save)."""
    at_layer = []
    with SavedBytes(model) as saved:
        handle = layer.register_forward_hook(lambda *args: at_layer.append(saved.total))
        try:
            output = model(x.clone().requires_grad_())
        finally:
            handle.remove()
    return saved.total, saved.total - at_layer[0] + output.numel() * output.element_size()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def images(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def call_saved(cam: GradCAM, x: torch.Tensor, targets) -> int:
    with SavedBytes(cam.model) as saved, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam(x, targets)
    return saved.total


def test_a_call_with_blank_maps_saves_only_the_graph_after_its_layer(resnet):
    x = images(4)
    layer = resnet.layer4[-1]
    cam = GradCAM(resnet, [layer])
    targets = [ClassifierOutputTarget(4)] * 4  # images 1 and 2 blank with these weights
    saved = call_saved(cam, x, targets)
    assert [f.image for f in cam.diagnostics] == [1, 2]
    whole, after = full_graph(resnet, x, layer)
    assert 0 < saved <= after < whole / 4  # (before issue 18: a layer search's whole graph)


def test_an_automatic_call_saves_the_graph_after_its_layer_and_its_first_at_most_one_image_more(resnet):
    x = images(4)
    targets = [ClassifierOutputTarget(3)] * 4
    cam = GradCAM(resnet)
    first = call_saved(cam, x, targets)
    layer = cam.target_layers[0]
    assert layer is resnet.layer4[-1]
    later = call_saved(cam, x, targets)
    whole, after = full_graph(resnet, x, layer)
    assert 0 < later <= after
    # the search decides on one image and keeps no graph below its candidates: its share is at most
    # one image's graph from the layer onwards (a search over the batch's whole graph: `whole`)
    one_after = full_graph(resnet, x[:1], layer)[1]
    assert first <= after + one_after < whole / 4


class SavedShapes(SavedBytes):
    """:class:`SavedBytes`, with the bytes per last-axis width."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.by_width: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.data_ptr() not in self.params and tensor.dim():
            width = tensor.shape[-1]
            self.by_width[width] = self.by_width.get(width, 0) + tensor.numel() * tensor.element_size()
        return super().pack(tensor)


@pytest.mark.parametrize("given", [True, False])
def test_legrad_saves_at_most_three_token_sized_tensors_per_block_and_no_mlp_hidden(given):
    # LeGrad's graph in a block runs from its attention to its score: the values V, the second norm's
    # input and the MLP's input are token-sized (B, N, D) and needed; the MLP's hidden (B, N, 4D), which
    # the GELU's own backward saves (6.2 token sizes per block before), is recomputed in backward.
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=64, num_classes=5
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(3)] if given else None
    with SavedShapes(model) as saved:
        LeGrad(model)(x, targets)
    tokens = 2 * 17 * 16 * 4  # one (B, N, D) float32 tensor
    assert saved.by_width.get(64, 0) == 0
    # 3 blocks x 3 token-sized tensors, plus the norms' statistics and the score's head (0.2 per block)
    assert 3 * 3 * tokens <= saved.total < 3 * 3.5 * tokens
