"""A class-score map is never the explained layer (issue 20, item 1; docs/layer-rule.md).

A segmenter's class map (a module whose map reaches a dense output through parameter-free
operations: resizing, activation, a dict) and a per-position classifier head pooled into the
class scores (VOLO's ``aux_head``, SqueezeNet's class convolution) are the answer, not an
explanation of it: the last feature map before them is chosen.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget


class ColourSegmenter(nn.Module):
    """Feature map: channel k = how much of colour k a pixel has (a fixed 1x1 conv after a 2x pool);
    class map: a 1x1 conv of it (class k = feature k); output: the class map upsampled, in a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.AvgPool2d(2))
        self.classifier = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features[0].bias.zero_()
            self.classifier.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.classifier.bias.zero_()

    def forward(self, x):
        scores = self.classifier(self.features(x))
        return {"out": F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def two_regions() -> torch.Tensor:
    """Red on the left half's top quarter, blue everywhere else (16x16)."""
    x = torch.zeros(1, 3, 16, 16)
    x[:, 2] = 1.0
    x[:, :, :8, :8] = 0.0
    x[:, 0, :8, :8] = 1.0
    return x


def test_the_feature_map_not_the_class_map_and_the_cam_lies_on_the_only_red_region():
    model = ColourSegmenter().eval()
    x = two_regions()
    choice = find_target_layer(model, x)
    assert choice.name == "features.2"  # the pooled feature map, not "classifier"
    mask = torch.ones(16, 16)
    with GradCAM(model) as cam:
        red = cam(x, targets=[SemanticSegmentationTarget(0, mask)])[0]
    # the 8x8 map is 1 on the red 4x4 cells, 0 elsewhere; bilinear upsampling blurs one pixel each side
    assert float(red[:7, :7].min()) == pytest.approx(1.0)
    assert float(red[9:].max()) == 0.0 and float(red[:, 9:].max()) == 0.0


class PerTokenHead(nn.Module):
    """VOLO-like: class scores = a linear head on the mean token + half the max of a per-token head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)
        self.aux_head = nn.Linear(8, 5)

    def forward(self, x):
        tokens = self.norm(self.embed(x).flatten(2).transpose(1, 2))
        return self.head(tokens.mean(1)) + 0.5 * self.aux_head(tokens).max(1)[0]


def test_a_per_position_class_head_is_not_chosen():
    choice = find_target_layer(PerTokenHead().eval(), torch.rand(1, 3, 16, 16))
    assert choice.name == "norm"


class Embedder(nn.Module):
    """An embedding network: its (B, D) output is its last map pooled; that map is still chosen (a
    per-position linear map pooled would read as a class head: docs/layer-rule.md)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.last = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x):
        return self.last(self.conv(x).relu()).mean(dim=(2, 3))


def test_a_pooled_feature_map_stays_the_answer_of_an_embedding_network():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert find_target_layer(Embedder().eval(), x).name == "last"


@pytest.mark.parametrize(
    "name, layer",
    [
        ("fcn_resnet50", "classifier.2"),
        ("deeplabv3_mobilenet_v3_large", "classifier.3"),
        ("lraspp_mobilenet_v3_large", "classifier.cbr.2"),
    ],
)
def test_torchvision_segmenters_get_a_feature_layer(name, layer):
    from torchvision.models import segmentation

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=4).eval()
    assert find_target_layer(model, torch.rand(1, 3, 64, 64)).name == layer


def segformer():
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 1],
        decoder_hidden_size=16,
        num_labels=4,
        patch_sizes=[7, 3],
        strides=[4, 2],
        mlp_ratios=[2, 2],
    )
    return SegformerForSemanticSegmentation(config).eval()


def test_segformer_gets_its_fused_features():
    assert find_target_layer(segformer(), torch.rand(1, 3, 64, 64)).name == "decode_head.activation"


def test_segformer_without_targets_explains_its_most_frequent_class_at_its_logits_resolution():
    """HuggingFace's logits are (B, K, H/4, W/4): the default target's mask is at that resolution."""
    model = segformer()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    labels = model(pixel_values=x).logits.argmax(dim=1)[0]
    assert labels.shape == (16, 16)
    k = int(torch.bincount(labels.flatten(), minlength=4).argmax())
    with GradCAM(model) as cam:
        got = cam(x)
    with GradCAM(model) as cam:
        want = cam(x, targets=[SemanticSegmentationTarget(k, (labels == k).float())])
    assert got.shape == (1, 64, 64) and float(abs(got - want).max()) < 1e-6 and got.max() > 0.5


class DepthNet(nn.Module):
    """A depth estimator: features (channel 0: the red of each 2x2 cell), a one-channel depth head
    (a 1x1 conv, depth = 2 x feature 0), upsampled and squeezed into a ``(B, H, W)`` output, as
    HuggingFace's GLPN and DPT return ``predicted_depth``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
            self.head.weight.copy_(torch.tensor([2.0, 0.0]).view(1, 2, 1, 1))

    def forward(self, x):
        depth = F.interpolate(self.head(self.features(x)), size=x.shape[-2:], mode="nearest")
        return depth.squeeze(1)


def test_a_squeezed_one_channel_dense_output_is_not_its_own_explanation():
    model = DepthNet().eval()
    x = two_regions()  # red in the top-left quarter
    choice = find_target_layer(model, x)
    assert choice.name == "features.2"  # the features, not the depth map "head" squeezed into the output
    with GradCAM(model) as cam:
        depth = cam(x, targets=[lambda out: out.sum()])[0]
    # the total depth reads only feature 0 (GradCAM weight 2 x 4 per cell), 1 on the red 4x4 cells
    assert float(depth[:7, :7].min()) == pytest.approx(1.0)
    assert float(depth[9:].max()) == 0.0 and float(depth[:, 9:].max()) == 0.0


class TokensOut(nn.Module):
    """A ViT-like model returning its normed patch tokens ``(B, N, C)`` beside the logits, with as
    many tokens as channels (4 and 4, as SigLIP's 8x8 patches of width 64): the tokens are not a
    dense class-score output ``(B, K, *grid)``, so ``norm`` stays the answer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 4, 4, stride=4)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        tokens = self.norm(self.embed(x).flatten(2).transpose(1, 2))
        return {"logits": self.fc(tokens.mean(1)), "last_hidden_state": tokens * 1.0}


def test_returned_tokens_with_as_many_tokens_as_channels_are_not_a_class_map():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert find_target_layer(TokensOut().eval(), x).name == "norm"
