"""The transformer blocks of known ViT families, and each block's class score as LeGrad reads it.

LeGrad scores block ``l`` by the model's own final norm and classifier applied to the mean of
block ``l``'s output tokens (the paper's and torchcam's definition: mean over all tokens, then the
norm, then the head):

- torchvision ``VisionTransformer``: ``heads(encoder.ln(mean(tokens)))`` (torchcam 0.5's exactly);
- timm ``VisionTransformer`` (DeiT distilled included), ``Beit``, ``Eva``, ``Cait``:
  ``forward_head(norm(mean(tokens)))``, the normalised mean token repeated over the sequence so
  that the model's own pooling (class token, distillation token, average, attention pool),
  ``fc_norm`` and head all read that one vector; the blocks are ``model.blocks`` (for CaiT: the
  patch-only self-attention blocks);
- HuggingFace ``ViT``/``DeiT``/``Dinov2``/``Dinov2WithRegisters`` ``...ForImageClassification``:
  the backbone's ``layernorm`` then the classifier(s) as the model applies them (DeiT with teacher:
  the mean of its two classifiers; DINOv2: ``classifier([x, x])`` for its class-token and
  patch-mean input); the blocks are the backbone's layer list (``encoder.layer``).

Other models: pass the blocks as ``target_layers`` and ``score_fn=``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def _timm_classes() -> tuple[type, ...]:
    try:
        from timm.models.beit import Beit
        from timm.models.cait import Cait
        from timm.models.eva import Eva
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return ()
    return (VisionTransformer, Beit, Eva, Cait)


def _hf_backbone(model: nn.Module) -> tuple[nn.Module, str] | None:
    """The backbone of a HuggingFace ViT classifier, and the classifier kind."""
    try:
        import transformers as hf
    except ImportError:
        return None
    kinds = (
        ("ViTForImageClassification", "vit", "token"),
        ("DeiTForImageClassificationWithTeacher", "deit", "teacher"),
        ("DeiTForImageClassification", "deit", "token"),
        ("Dinov2WithRegistersForImageClassification", "dinov2_with_registers", "concat"),
        ("Dinov2ForImageClassification", "dinov2", "concat"),
    )
    for class_name, attribute, kind in kinds:
        cls = getattr(hf, class_name, None)
        if isinstance(cls, type) and isinstance(model, cls):
            return getattr(model, attribute), kind
    return None


def _torchvision_vit() -> type | None:
    try:
        from torchvision.models import VisionTransformer
    except ImportError:
        return None
    return VisionTransformer


def transformer_blocks(model: nn.Module) -> list[nn.Module] | None:
    """The blocks of a known ViT family, in forward order, or None for other models."""
    tv = _torchvision_vit()
    if tv is not None and isinstance(model, tv):
        return list(model.encoder.layers)
    if isinstance(model, _timm_classes()):
        return list(model.blocks)
    hf = _hf_backbone(model)
    if hf is not None:  # the backbone's layer list (``encoder.layer`` or ``layers``, by version)
        return next((list(m) for m in hf[0].modules() if isinstance(m, nn.ModuleList)), None)
    return None


def block_score_fn(model: nn.Module) -> ScoreFn | None:
    """``tokens (B, N, D) -> logits (B, classes)`` of a known ViT family (see the module docstring)."""
    tv = _torchvision_vit()
    if tv is not None and isinstance(model, tv):
        return lambda tokens: model.heads(model.encoder.ln(tokens.mean(dim=1)))
    if isinstance(model, _timm_classes()):
        return lambda tokens: model.forward_head(
            model.norm(tokens.mean(dim=1, keepdim=True)).expand_as(tokens)
        )
    hf = _hf_backbone(model)
    if hf is None:
        return None
    backbone, kind = hf

    def hf_score(tokens: torch.Tensor) -> torch.Tensor:
        pooled = backbone.layernorm(tokens.mean(dim=1))
        if kind == "teacher":
            return (model.cls_classifier(pooled) + model.distillation_classifier(pooled)) / 2
        if kind == "concat":
            return model.classifier(torch.cat([pooled, pooled], dim=1))
        return model.classifier(pooled)

    return hf_score
