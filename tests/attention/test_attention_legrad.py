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
    # torchcam's grid, upsampled and scaled again as every map of this library (it spans [0, 1])
    expected = CF.scale_to_unit(CF.resize_cams(CF.scale_to_unit(theirs), (64, 64))).numpy()
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


def _timm_vit(depth: int = 3):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=(16, 24), patch_size=4, embed_dim=16, depth=depth, num_heads=2, num_classes=5
    ).eval()
    nn.init.normal_(model.head.weight, std=0.5)
    return model


def _whole_graph_legrad(model, x, targets, leak=False):
    """LeGrad by its definition, the slow way: timm's explicit-softmax attention, one forward with the
    whole autograd graph (weights included), then per block ``autograd.grad(s_l, A_l)``. With
    ``leak``, every block's attention is differentiated by the sum of all blocks' scores instead."""
    import copy

    from pytorch_grad_cam.attention.blocks import block_score_fn

    model = copy.deepcopy(model)
    attentions, tokens = [], []
    for block in model.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: attentions.append(o))
        block.register_forward_hook(lambda m, i, o: tokens.append(o))
    logits = model(x)
    classes = logits.argmax(dim=1) if targets is None else torch.tensor(targets)
    score_fn = block_score_fn(model)
    scores = [score_fn(t).gather(1, classes[:, None]).sum() for t in tokens]
    grads = [
        torch.autograd.grad(sum(scores) if leak else s, a, retain_graph=True)[0]
        for s, a in zip(scores, attentions)
    ]
    return torch.stack([torch.relu(g).mean(dim=(1, 2)) for g in grads]).mean(dim=0)


@pytest.mark.parametrize("targets", [None, [3, 1]])
def test_per_block_backward_equals_the_whole_graph_definition(targets):
    # The fast path (no graph before a block's attention, each block's graph cut at its output, a
    # backward per block to its own attention) against the definition on the whole graph. A gradient
    # that crossed blocks (block l's attention also reached by later blocks' scores) changes the
    # answer on this model: the leaky version is far from both.
    model = _timm_vit()
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    expected = _whole_graph_legrad(model, x, targets)
    leaky = _whole_graph_legrad(model, x, targets, leak=True)
    given = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
    relevance, prefix, _ = LeGrad(model).token_relevance(x, given)
    scale = expected.abs().max()
    assert prefix == 1 and scale > 0
    torch.testing.assert_close(relevance / scale, expected / scale, rtol=0, atol=1e-6)
    assert (leaky - expected).abs().max() / scale > 0.05
    # the model's parameters got no gradient and no flag changed
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("targets", [None, [3, 1]])
def test_another_threads_forward_during_the_call_is_left_alone(targets):
    # a forward of the same model in another thread, started while LeGrad's call runs (from a hook of
    # the user's): it gets the model's own output, and the call's relevance is unchanged
    import threading

    model = _timm_vit()
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(2))
    given = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
    expected, _, _ = LeGrad(model).token_relevance(x, given)
    with torch.no_grad():
        own = model(x)
    seen, started = [], []

    def other_thread():
        with torch.no_grad():
            seen.append(model(x))

    def user_hook(module, args, output):
        if not started:
            started.append(True)
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()

    handle = model.blocks[0].register_forward_hook(user_hook)
    try:
        got, _, _ = LeGrad(model).token_relevance(x, given)
    finally:
        handle.remove()
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], own, rtol=0, atol=1e-6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
