"""The gradient methods' row folded layer by layer in backward equals the full-matrix definition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytorch_grad_cam.attention import functional as AF
from pytorch_grad_cam.attention.attention_gradcam import AttentionGradCAM
from pytorch_grad_cam.attention.capture import AttentionCapture
from pytorch_grad_cam.attention.rollout import GradientRollout
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

timm = pytest.importorskip("timm")


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    config = dict(patch_size=4, embed_dim=16, num_heads=2, num_classes=5)
    if kind == "cait":  # patch-only self-attention, then class attention: (B, h, 1, N) layers last
        model = timm.models.cait.Cait(img_size=16, depth=2, depth_token_only=1, **config)
    elif kind == "no_class_token":
        model = timm.models.vision_transformer.VisionTransformer(
            img_size=16, depth=3, class_token=False, global_pool="avg", **config
        )
    else:
        model = timm.models.vision_transformer.VisionTransformer(img_size=16, depth=3, **config)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features == 5:
            nn.init.normal_(module.weight, std=0.5)
    return model.eval()


def _full_matrices(model, x, classes, layer_matrix):
    """The definition the slow way: every gradient returned at once, every (B, N, N) matrix kept."""
    with torch.no_grad(), AttentionCapture(grad=True) as capture:
        logits = model(x)
    probs = [r.probs for r in capture.records]
    grads = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), probs)
    num_tokens = max(p.shape[-1] for p in probs)
    return [layer_matrix(p.detach(), g, num_tokens) for p, g in zip(probs, grads)]


@pytest.mark.parametrize("kind", ["vit", "cait", "no_class_token"])
def test_folded_rows_equal_the_full_products(kind):
    model = _model(kind)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    classes = torch.tensor([1, 4])
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    prefix = 0 if kind == "no_class_token" else 1

    def chefer(p, g, n):
        return AF.embed_attention(AF.positive_gradient_attention(p, g), n)

    matrices = _full_matrices(model, x, classes, chefer)
    expected = AF.source_row(AF.chefer_relevance(matrices), prefix)
    got, got_prefix, _ = AttentionGradCAM(model).token_relevance(x, targets)
    assert got_prefix == prefix
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)

    def rollout(p, g, n):
        matrix = AF.gradient_weighted_attention(p, g)
        keep_first = prefix > 0 and matrix.shape[-1] == n
        return AF.embed_attention(AF.discard_lowest(matrix, 0.3, keep_first), n)

    matrices = _full_matrices(model, x, classes, rollout)
    expected = AF.source_row(AF.rollout(matrices), prefix)
    got, _, _ = GradientRollout(model, discard_ratio=0.3).token_relevance(x, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", [AttentionGradCAM, GradientRollout])
@pytest.mark.parametrize("family", ["timm", "torchvision"])
def test_low_memory_recomputes_the_same_numbers(method, family):
    # low_memory=True: no graph in the forward, each block run again from its stored input in
    # backward. The same rows; in train mode (dropout drawn) as well, the random state restored.
    if family == "timm":
        model = _model("vit")
        model.blocks[1].attn.attn_drop.p = 0.3  # a dropout that draws in train mode
    else:
        torchvision = pytest.importorskip("torchvision")
        torch.manual_seed(0)
        model = torchvision.models.VisionTransformer(
            image_size=16,
            patch_size=4,
            num_layers=3,
            num_heads=2,
            hidden_dim=16,
            mlp_dim=32,
            num_classes=5,
            dropout=0.2,
        ).eval()
        nn.init.normal_(model.heads.head.weight, std=0.5)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(4)]
    expected, prefix, _ = method(model).token_relevance(x, targets)
    got, got_prefix, _ = method(model, low_memory=True).token_relevance(x, targets)
    assert got_prefix == prefix == 1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    model.train()
    torch.manual_seed(7)
    expected, _, _ = method(model).token_relevance(x, targets)
    torch.manual_seed(7)
    got, _, _ = method(model, low_memory=True).token_relevance(x, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    torch.manual_seed(8)
    other, _, _ = method(model).token_relevance(x, targets)
    assert not torch.allclose(other, expected, atol=1e-4)  # the dropout does change the answer


def test_low_memory_refuses_attention_outside_the_blocks():
    with pytest.raises(ValueError, match="attentions ran outside the blocks"):
        AttentionGradCAM(_model("cait"), low_memory=True)(torch.randn(1, 3, 16, 16), [0])
    with pytest.raises(TypeError, match="low_memory must be True or False"):
        GradientRollout(_model("vit"), low_memory=1)
