"""The layer search's score: the targets', the top class's, or with neither the output's energy, so
that a method with no targets (EigenCAM) chooses a layer on a segmentation network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_grad_cam import EigenCAM, GradCAM
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.layer_search.score import ENERGY, SEGMENTATION, TOP_CLASS, output_energy, search_score
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget


class SoftmaxSegmenter(nn.Module):
    """backbone (8x8 -> 4x4) -> 1x1 class head -> upsampled to the input -> softmax over 3 classes,
    returned as ``{"out": (B, 3, H, W)}``. The per-pixel probabilities add up to 1, so their plain
    sum has no gradient anywhere; the answer is ``backbone.1``: ``head`` is the class-score map, the
    model's output up to resizing and softmax, not an explanation of it (issue 20)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = F.interpolate(self.head(self.backbone(x)), size=x.shape[-2:], mode="bilinear")
        return {"out": logits.softmax(dim=1)}


def x_of(batch=1):
    return torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_output_energy_is_half_the_sum_of_squares_of_the_float_tensors():
    outputs = {"out": torch.tensor([[1.0, 2.0], [3.0, -4.0]]), "labels": torch.tensor([7, 8])}
    assert output_energy(outputs).item() == pytest.approx(15.0)  # (1 + 4 + 9 + 16) / 2
    assert output_energy((torch.tensor([2.0]), [torch.tensor([1.0, 1.0])])).item() == pytest.approx(3.0)
    with pytest.raises(TypeError, match="no floating-point tensor"):
        output_energy({"labels": torch.tensor([1])})


def test_which_score_the_search_reads():
    logits = torch.tensor([[1.0, 5.0, 2.0], [-1.0, -3.0, -2.0]])
    score, kind = search_score(logits, None, 2)
    assert (score.item(), kind) == (pytest.approx(4.0), TOP_CLASS)  # 5 + (-1)
    score, kind = search_score(logits, [ClassifierOutputTarget(2), ClassifierOutputTarget(1)], 2)
    assert score.item() == pytest.approx(-1.0)  # 2 + (-3)
    seg = {"out": torch.tensor([[[[1.0, 2.0]], [[0.0, 2.0]]]])}  # (1, 2, 1, 2): a segmenter's
    score, kind = search_score(seg, None, 1)
    # both pixels predict class 0 (the tie at 2.0 goes to the lower class): 1 + 2 over its mask
    assert (score.item(), kind) == (pytest.approx(3.0), SEGMENTATION)
    other = (torch.tensor([[[1.0, 2.0, 0.0]]]),)  # (1, 1, 3): neither class scores nor a dense map
    score, kind = search_score(other, None, 1)
    assert (score.item(), kind) == (pytest.approx(2.5), ENERGY)


def test_eigencam_chooses_a_layer_on_a_segmenter_with_no_targets():
    model = SoftmaxSegmenter().eval()
    x = x_of(2)
    cam = EigenCAM(model)
    maps = cam(x)
    assert cam.layer_choice.name == "backbone.1"
    assert cam.layer_choice.grid == (4, 4)
    np.testing.assert_allclose(maps, EigenCAM(model, [model.backbone[1]])(x), atol=1e-6)
    assert maps.shape == (2, 8, 8) and maps.max() == pytest.approx(1.0, abs=1e-5)


def test_a_gradient_method_without_targets_explains_each_images_most_frequent_class():
    model = SoftmaxSegmenter().eval()
    x = torch.cat([x_of(), x_of() * -10.0])  # predicted areas per class: (2, 0, 62), (33, 0, 31)
    labels = model(x)["out"].argmax(dim=1)
    targets = []
    for i in range(2):
        counts = torch.bincount(labels[i].flatten(), minlength=3)
        k = int(counts.argmax())
        targets.append(SemanticSegmentationTarget(k, (labels[i] == k).float()))
    assert int(torch.bincount(labels[0].flatten(), minlength=3).argmax()) != int(
        torch.bincount(labels[1].flatten(), minlength=3).argmax()
    )  # the two images explain different classes
    got = GradCAM(model)(x)
    np.testing.assert_allclose(got, GradCAM(model)(x, targets=targets), atol=1e-6)
    assert got.max() > 0.5
    with pytest.raises(ValueError, match=r"targets=None picks each image's top class"):
        flat = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(2)).eval()  # (B, 2, 64): neither kind
        GradCAM(flat, target_layers=[flat[0]])(x)


def test_the_model_itself_is_never_the_choice():
    """Its ``{"out": (1, 3, 8, 8)}`` is aligned with the input and gets a gradient, but it is the
    output being explained; a model with no layer inside gets the error naming that."""
    assert find_target_layer(SoftmaxSegmenter().eval(), x_of()).name == "backbone.1"
    with pytest.raises(ValueError, match=r"no module of the model outputs a spatial map.*own output"):
        find_target_layer(nn.Conv2d(3, 4, 3, padding=1), x_of())


def test_eigencam_on_torchvision_fcn_with_no_configuration():
    """``{'out': (B, K, H, W)}``: the last feature map (classifier.2, the head's ReLU), not the class map
    (classifier.4) nor the model's output."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=5, aux_loss=False
    ).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cam = EigenCAM(model)
    maps = cam(x)
    assert cam.layer_choice.name == "classifier.2"
    assert cam.layer_choice.grid == (8, 8)
    assert maps.max() > 0.99 and maps.min() == 0.0 and maps.std() > 0.05
