"""Model kinds with no configuration: tiny torchvision/timm/HuggingFace configs and a 1-D network."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
from conftest import LAYER_METHODS
from torch import nn

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.errors import BlankMapWarning
from pytorch_grad_cam.registry import METHODS


def unzero(model: nn.Module) -> nn.Module:
    """Random weights for all-zero linear heads (torchvision ViT, timm Mixer), as a trained model has."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and not bool(module.weight.any()):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
    return model.eval()


def tv_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(16, 4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=4)


def tv_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    return SwinTransformer([4, 4], 8, [1, 1], [1, 1], [2, 2], num_classes=4)


def timm_model(name, **kwargs):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    if name == "mlp_mixer":
        return timm.models.mlp_mixer.MlpMixer(num_classes=4, **kwargs)
    return timm.create_model(name, pretrained=False, num_classes=4, **kwargs)


def hf_model(model_name, config_name, **kwargs):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(num_labels=4, **kwargs)
    return getattr(transformers, model_name)(config)


HF_VIT = dict(
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    image_size=16,
    patch_size=4,
)

#: (id, builder, input (H, W), expected layer name, expected layout description)
CASES = [
    ("torchvision-vit", tv_vit, (16, 16), "encoder.layers.encoder_layer_1.ln_1", "tokens (1 prefix + 4x4)"),
    ("torchvision-swin", tv_swin, (32, 32), "permute", "channels-first 4x4"),
    (
        "timm-vit-nonsquare",
        lambda: timm_model(
            "vit_tiny_patch16_224", img_size=(16, 24), patch_size=4, embed_dim=8, depth=2, num_heads=2
        ),
        (16, 24),
        "blocks.1.norm1",
        "tokens (1 prefix + 4x6)",
    ),
    (
        "timm-deit-distilled",
        lambda: timm_model(
            "deit_tiny_distilled_patch16_224", img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2
        ),
        (16, 16),
        "blocks.1.norm1",
        "tokens (2 prefix + 4x4)",
    ),
    (
        "timm-dinov2-registers",
        lambda: timm_model(
            "vit_small_patch14_reg4_dinov2", img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2
        ),
        (16, 16),
        "blocks.1.norm1",
        "tokens (5 prefix + 4x4)",
    ),
    (
        "timm-swin",
        lambda: timm_model(
            "swin_tiny_patch4_window7_224",
            img_size=32,
            window_size=4,
            embed_dim=8,
            depths=(1, 1),
            num_heads=(1, 1),
        ),
        (32, 32),
        "norm",
        "channels-last 4x4",
    ),
    (
        "timm-mixer",
        lambda: timm_model("mlp_mixer", img_size=16, patch_size=4, num_blocks=2, embed_dim=8),
        (16, 16),
        "norm",
        "tokens (0 prefix + 4x4)",
    ),
    (
        "timm-hybrid-resnet-vit",
        lambda: timm_model("vit_tiny_r_s16_p8_224", img_size=64, embed_dim=8, depth=1, num_heads=2),
        (64, 64),
        "blocks.0.norm1",
        "tokens (1 prefix + 2x2)",
    ),
    (
        "hf-vit",
        lambda: hf_model("ViTForImageClassification", "ViTConfig", **HF_VIT),
        (16, 16),
        None,
        "tokens (1 prefix + 4x4)",
    ),
    (
        "hf-swin",
        lambda: hf_model(
            "SwinForImageClassification",
            "SwinConfig",
            image_size=32,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1],
            num_heads=[1, 1],
            window_size=2,
        ),
        (32, 32),
        None,
        "tokens (0 prefix + 4x4)",
    ),
    (
        "hf-convnext",
        lambda: hf_model(
            "ConvNextForImageClassification",
            "ConvNextConfig",
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_stages=2,
        ),
        (32, 32),
        None,
        "channels-first 4x4",
    ),
]


@pytest.mark.parametrize(
    ("builder", "size", "expected", "layout"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_zero_configuration_gradcam(builder, size, expected, layout):
    model = unzero(builder())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    cam = GradCAM(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlankMapWarning)
        maps = cam(x)
    choice = cam.layer_choice
    if expected is not None:
        assert choice.name == expected
    assert choice.layout.describe() == layout
    assert maps.shape == (2, *size) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() == pytest.approx(1.0, abs=1e-5)
    # the choice equals passing the same layer and transform by hand
    by_hand = GradCAM(model, [choice.layer], reshape_transform=choice.reshape_transform)(x)
    np.testing.assert_allclose(maps, by_hand, atol=1e-6)


class Signal1d(nn.Module):
    """Conv1d network for ``(B, 2, L)`` signals: conv-relu, conv(stride 2)-relu, mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=2))


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_method_on_1d_signals(name):
    model = Signal1d().eval()
    x = torch.randn(2, 2, 16, generator=torch.Generator().manual_seed(0))
    cls = METHODS[name].cls
    kwargs = {"seed": 0} if "seed" in inspect.signature(cls).parameters else {}
    cam = cls(model, **kwargs)
    maps = cam(x)
    assert maps.shape == (2, 16) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    if cls.__name__ != "FullGrad":
        assert cam.layer_choice.name == "features.3"
        np.testing.assert_allclose(maps, cls(model, [model.features[3]], **kwargs)(x), atol=1e-6)
