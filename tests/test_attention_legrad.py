"""LeGrad: by hand on the hand-set ViT of conftest, and against torchcam 0.5 on torchvision's ViT-B/16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.attention.legrad import LeGrad
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


def mean_token_score(tokens: torch.Tensor) -> torch.Tensor:
    """The block logits (mean token, minus it) of the hand-set ViT."""
    mean = tokens.mean(dim=1)
    return torch.cat([mean, -mean], dim=1)


def test_legrad_by_hand(hand_vit):
    # s_l = mean over the 5 tokens of t_l. Block l's output is t + mean_h P_h t, so
    # ds_l/dP_l[h, i, j] = t_{l-1}[j] / 5 / 2 for every query i: block 1 -> t0 / 10 = [.1, .1, .2, .3, .4];
    # block 2 -> t1 / 10 = [.26, .26, .41, .56, .71]. LeGrad over both: their mean.
    cam = LeGrad(hand_vit, list(hand_vit.blocks), score_fn=mean_token_score)
    relevance, prefix, _ = cam.token_relevance(X, None)
    assert prefix == 1
    torch.testing.assert_close(relevance, torch.tensor([[0.18, 0.18, 0.305, 0.43, 0.555]]))
    last = LeGrad(hand_vit, [hand_vit.blocks[1]], score_fn=mean_token_score)
    torch.testing.assert_close(
        last.token_relevance(X, None)[0], torch.tensor([[0.26, 0.26, 0.41, 0.56, 0.71]])
    )
    # the map: patches [.18, .305, .43, .555] min-max scaled
    np.testing.assert_allclose(cam(X), [[[0.0, 1 / 3], [2 / 3, 1.0]]], atol=1e-6)
    # class 1 (minus the mean): every gradient negative, relu -> 0
    relevance, _, _ = cam.token_relevance(X, [ClassifierOutputTarget(1)])
    torch.testing.assert_close(relevance, torch.zeros(1, 5))


def test_unknown_models_need_blocks_and_a_score(hand_vit):
    with pytest.raises(NotApplicableError, match="pass the transformer blocks as target_layers"):
        LeGrad(hand_vit)
    with pytest.raises(TypeError, match="score_fn must be callable"):
        LeGrad(hand_vit, list(hand_vit.blocks), score_fn=3)
    with pytest.raises(NotApplicableError, match="ran 2 attentions"):
        LeGrad(hand_vit, [hand_vit.blocks], score_fn=mean_token_score)(X)


@pytest.fixture(scope="module")
def vit_b_16():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, image_size=64).eval()
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    return model


@pytest.mark.parametrize("blocks", [slice(-4, None), slice(None)])
def test_equals_torchcam(vit_b_16, blocks):
    torchcam = pytest.importorskip("torchcam.methods")
    model = vit_b_16
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    chosen = list(model.encoder.layers)[blocks]
    with torchcam.LeGrad(model, chosen) as extractor:
        scores = model(x)
        (theirs,) = extractor([3, 7], scores)  # (2, 4, 4), each scaled to [0, 1]
    ours = LeGrad(model, chosen)
    relevance, prefix, _ = ours.token_relevance(x, [ClassifierOutputTarget(3), ClassifierOutputTarget(7)])
    grid = relevance[:, prefix:].reshape(2, 4, 4)
    torch.testing.assert_close(
        CF.scale_to_unit(grid / grid.amax(dim=(1, 2), keepdim=True)), theirs, atol=1e-5, rtol=0
    )
    cam = ours(x, [3, 7])
    expected = CF.resize_cams(CF.scale_to_unit(theirs), (64, 64)).numpy()
    np.testing.assert_allclose(cam, expected, atol=1e-5)
    default = LeGrad(model)(x, [3, 7]) if blocks == slice(None) else None
    if default is not None:
        np.testing.assert_allclose(default, cam, atol=1e-6)


def test_top_class_and_given_targets_agree(vit_b_16):
    # targets given: each block's gradient at once, the graph cut after the block; targets=None:
    # the whole graph kept until the top class is known. The same numbers.
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = LeGrad(vit_b_16)
    default = cam(x)
    with torch.no_grad():
        top = vit_b_16(x).argmax(dim=1).tolist()
    np.testing.assert_allclose(cam(x, top), default, atol=1e-6)
