"""The attention methods on the vision transformers users have (random weights, tiny configs).

The registry's core guarantees (tests/test_registry.py runs them on a CNN) checked here on ViTs:
maps in [0, 1] of the input's size, batch invariance, any prefix count, non-square inputs, grad modes,
and the model left as it was; Swin and CNNs refused with NotApplicableError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam._core.outputs import logits_of
from pytorch_grad_cam.attention.attention_gradcam import AttentionGradCAM
from pytorch_grad_cam.attention.legrad import LeGrad
from pytorch_grad_cam.attention.rollout import AttentionRollout, GradientRollout
from pytorch_grad_cam.errors import NotApplicableError

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
torchvision = pytest.importorskip("torchvision")

METHODS = [LeGrad, AttentionRollout, GradientRollout, AttentionGradCAM]
TINY = dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=5)
WIDE = (16, 24)  # a non-square input: a 4 x 6 grid of patches


def _hf(config_cls, model_cls, **extra):
    config = config_cls(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=16,
        patch_size=4,
        num_labels=5,
        **extra,
    )
    return model_cls(config)


#: name -> (builder, input size, prefix tokens)
FAMILIES = {
    "torchvision_vit": (
        lambda: torchvision.models.VisionTransformer(
            image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
        ),
        (16, 16),
        1,
    ),
    "timm_vit_no_class_token": (
        lambda: timm.models.vision_transformer.VisionTransformer(
            img_size=WIDE, class_token=False, global_pool="avg", **TINY
        ),
        WIDE,
        0,
    ),
    "timm_vit": (lambda: timm.models.vision_transformer.VisionTransformer(img_size=WIDE, **TINY), WIDE, 1),
    "timm_deit_distilled": (
        lambda: timm.models.deit.VisionTransformerDistilled(img_size=WIDE, **TINY),
        WIDE,
        2,
    ),
    "timm_dinov2_registers": (
        lambda: timm.models.vision_transformer.VisionTransformer(img_size=WIDE, reg_tokens=4, **TINY),
        WIDE,
        5,
    ),
    "timm_beit": (lambda: timm.models.beit.Beit(img_size=16, **TINY), (16, 16), 1),
    "timm_eva": (lambda: timm.models.eva.Eva(img_size=16, **TINY), (16, 16), 1),
    "timm_cait": (lambda: timm.models.cait.Cait(img_size=16, depth_token_only=1, **TINY), (16, 16), 1),
    "hf_vit": (lambda: _hf(transformers.ViTConfig, transformers.ViTForImageClassification), (16, 16), 1),
    "hf_deit": (
        lambda: _hf(transformers.DeiTConfig, transformers.DeiTForImageClassificationWithTeacher),
        (16, 16),
        2,
    ),
    "hf_dinov2": (
        lambda: _hf(transformers.Dinov2Config, transformers.Dinov2ForImageClassification),
        (16, 16),
        1,
    ),
    "hf_dinov2_registers": (
        lambda: _hf(
            transformers.Dinov2WithRegistersConfig,
            transformers.Dinov2WithRegistersForImageClassification,
            num_register_tokens=4,
        ),
        (16, 16),
        5,
    ),
}


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    builder, size, _ = FAMILIES[name]
    torch.manual_seed(0)
    model = builder().eval()
    for module in model.modules():  # heads that start at zero (torchvision) would give all-zero gradients
        if isinstance(module, nn.Linear) and module.out_features == 5:
            nn.init.normal_(module.weight, std=0.5)
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(1))
    return model, x


def _logits(model, x):
    with torch.no_grad():
        return logits_of(model(x))


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_maps_batch_invariance_and_model_untouched(family, method):
    model, x = build(family)
    before = model_snapshot(model)
    expected_logits = _logits(model, x)
    cam = method(model)
    targets = [0, 3, 1] if method.uses_targets else None
    maps = cam(x, targets)
    assert maps.shape == (3, *x.shape[2:]) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0.9
    torch.testing.assert_close(logits_of(cam.outputs), expected_logits, rtol=0, atol=1e-5)
    for index in range(3):
        alone = cam(x[index : index + 1], None if targets is None else [targets[index]])
        np.testing.assert_allclose(maps[index : index + 1], alone, atol=1e-5)
    assert_same_model(before, model_snapshot(model))
    torch.testing.assert_close(_logits(model, x), expected_logits, rtol=0, atol=0)
    _, _, prefix = FAMILIES[family]
    if family == "timm_cait" and method is LeGrad:
        prefix = 0  # LeGrad explains CaiT's patch-only self-attention blocks (no class token yet)
    assert cam.token_relevance(x[:1], None)[1] == prefix


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_aug_smooth_grad_modes_and_frozen_parameters(method):
    model, x = build("timm_dinov2_registers")
    x = x[:2]
    expected = method(model)(x, [1, 2])
    smooth = method(model)(x, [1, 2], aug_smooth=True)
    assert smooth.shape == expected.shape and not np.allclose(smooth, expected)
    np.testing.assert_allclose(smooth[1:], method(model)(x[1:], [2], aug_smooth=True), atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(method(model)(x, [1, 2]), expected, atol=1e-6)
    with torch.inference_mode():
        np.testing.assert_allclose(method(model)(x.clone(), [1, 2]), expected, atol=1e-6)
    for p in model.parameters():
        p.requires_grad_(False)
    np.testing.assert_allclose(method(model)(x, [1, 2]), expected, atol=1e-6)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_user_state_kept_and_errors_leave_nothing(method):
    model, x = build("timm_vit")
    model.train()
    model.blocks[0].eval()
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)
    before = model_snapshot(model)
    method(model)(x[:2], [0, 1])
    assert_same_model(before, model_snapshot(model))

    def explode(module, args, output):
        raise RuntimeError("boom")

    handle = model.norm.register_forward_hook(explode)
    with_hook = model_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        method(model)(x[:2])
    assert_same_model(with_hook, model_snapshot(model))
    handle.remove()
    assert torch._C._len_torch_function_stack() == 0 and torch.is_grad_enabled()


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_swin_and_cnns_are_not_applicable(method, small_cnn):
    torch.manual_seed(0)
    swin = timm.models.swin_transformer.SwinTransformer(
        img_size=16, patch_size=2, window_size=2, embed_dim=8, depths=(1, 1), num_heads=(2, 2), num_classes=5
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(NotApplicableError, match="windowed attention"):
        if method is LeGrad:
            method(swin, list(swin.layers[0].blocks), score_fn=lambda t: swin.head(t.mean(dim=(1, 2))))(x)
        else:
            method(swin)(x)
    if method is LeGrad:
        with pytest.raises(NotApplicableError, match="LeGrad does not know the blocks"):
            method(small_cnn)
    else:
        with pytest.raises(NotApplicableError, match="no attention"):
            method(small_cnn)(x)


def test_cait_explains_the_class_token_through_its_class_attention():
    # CaiT's patch-only blocks carry no class token; the rollout reads the class token's rows of
    # the class-attention blocks on top of them. Without those blocks the map is the patch mean.
    model, x = build("timm_cait")
    relevance, prefix, _ = AttentionRollout(model).token_relevance(x[:1], None)
    assert prefix == 1 and relevance.shape == (1, 17)
    torch.testing.assert_close(relevance.sum(), torch.tensor(1.0))
    assert relevance[0, 0] > 0  # the class token's own share, through the class attention's residual


def test_legrad_picks_blocks(monkeypatch):
    model, x = build("timm_vit")
    last = LeGrad(model, [model.blocks[-1]])(x, [0, 1, 2])
    both = LeGrad(model)(x, [0, 1, 2])
    assert not np.allclose(last, both)
    np.testing.assert_allclose(LeGrad(model, list(model.blocks))(x, [0, 1, 2]), both, atol=1e-6)


def test_token_count_without_a_grid():
    model, x = build("timm_vit")
    with pytest.raises(ValueError, match="tokens do not form a grid of square patches over a 16x24 input"):
        AttentionRollout(model, prefix_tokens=3)(x)


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_every_image_map_spans_zero_to_one_as_the_other_methods(method):
    """Scaled after the upsampling, as every method's maps: each image's map reaches 0 and 1 (a map
    scaled on the token grid and then upsampled stops short of both, e.g. [0.003, 0.951] on a DeiT)."""
    model, x = build("timm_deit_distilled")
    maps = method(model)(x, [0, 3, 1] if method.uses_targets else None)
    flat = maps.reshape(3, -1)
    assert (flat.min(axis=1) == 0).all() and (flat.max(axis=1) > 1 - 1e-5).all()
