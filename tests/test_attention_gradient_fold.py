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
