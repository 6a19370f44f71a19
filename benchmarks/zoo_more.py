"""The zoo's families added for issue 20 (item 7): more timm architectures and HuggingFace image
classifiers from small configs, and the BatchNorm calibration some random networks need.

Used by ``benchmarks/zoo.py`` (in ``--only timm`` and ``--only hf``); a row has the same fields as
the others. A HuggingFace CNN initialises its convolutions at std 0.02 with BatchNorm statistics of
an identity, so each layer shrinks its input about two-fold and MobileNetV1's logits are about 1e-32
(MobileViTV2's exactly 0): nothing to explain. Such a model (``calibrate`` below) gets the BatchNorm
statistics of three train-mode forwards of random images (cumulative averages), as training would
leave them, before it is explained in eval mode; the row says how many norms (``calibrated_norms``).
HuggingFace EfficientNet also draws its BatchNorm weights from normal(0, 0.02), which no statistics
undo: it is built with ``initializer_range=1.0`` (the convolutions' scale is then the norms' to set).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

#: timm architectures of families the first zoo did not list (CNNs, hybrids, MLPs, ViT variants).
TIMM_MORE = (
    "nf_regnet_b0",
    "nfnet_l0",
    "dla34",
    "hrnet_w18_small",
    "rexnet_100",
    "tresnet_m",
    "tinynet_e",
    "hgnet_tiny",
    "hgnetv2_b0",
    "inception_next_atto",
    "cspresnet50",
    "cs3darknet_s",
    "dpn68",
    "res2net50_26w_4s",
    "resnest14d",
    "skresnet18",
    "selecsls42b",
    "ese_vovnet19b_dw",
    "mobileone_s0",
    "repvgg_a0",
    "rdnet_tiny",
    "ghostnetv2_100",
    "lcnet_050",
    "mixnet_s",
    "fbnetc_100",
    "xception41",
    "inception_v4",
    "seresnext26d_32x4d",
    "gernet_s",
    "efficientvit_b0",
    "efficientvit_m0",
    "mobilenetv4_conv_small",
    "mambaout_femto",
    "starnet_s1",
    "convnextv2_atto",
    "resnetv2_50",
    "repghostnet_050",
    "mvitv2_tiny",
    "volo_d1_224",
    "lambda_resnet26t",
    "halonet26t",
    "botnet26t_256",
    "coat_lite_tiny",
    "convit_tiny",
    "pit_ti_224",
    "tnt_s_patch16_224",
    "sequencer2d_s",
    "gmlp_ti16_224",
    "gmixer_12_224",
    "focalnet_tiny_srf",
    "nest_tiny",
    "visformer_tiny",
    "davit_tiny",
    "swiftformer_xs",
    "deit3_small_patch16_224",
    "flexivit_small",
    "nextvit_small",
    "fastvit_mci0",
    "mobilevitv2_050",
    "levit_conv_128s",
    "shvit_s1",
    "vit_little_patch16_reg4_gap_256",
    "vit_relpos_small_patch16_224",
    "efficientformerv2_s0",
    "maxxvit_rmlp_nano_rw_256",
    "vitamin_small_224",
)

_K = 10
_VIT = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=64,
    patch_size=8, num_labels=_K,
)  # fmt: skip
_SWIN = dict(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4)
_STAGES = dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_labels=_K)
_HIERA = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2])
_LEVIT = dict(hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2], depths=[1, 1, 1], key_dim=[8, 8, 8])
_EFFICIENT = dict(width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320)
_PYRAMID = dict(
    depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64], num_attention_heads=[1, 1, 2, 2], num_labels=_K
)

#: HuggingFace families the first zoo did not list: (family, config kwargs, calibrate), all at 64x64;
#: the classes are ``{family}ForImageClassification`` and ``{family}Config``.
HF_MORE = (
    ("ConvNextV2", _STAGES, False),
    ("Data2VecVision", _VIT, False),
    ("DeiT", _VIT, False),
    ("IJepa", _VIT, False),
    ("ViTMSN", _VIT, False),
    ("PoolFormer", _STAGES, False),
    ("RegNet", dict(_STAGES, embedding_size=8, groups_width=8), False),
    ("Bit", dict(_STAGES, hidden_sizes=[32, 32, 64, 64], embedding_size=32, num_groups=4), False),
    ("Swinv2", dict(_SWIN, num_labels=_K), False),
    ("DonutSwin", dict(_SWIN, num_labels=_K), False),
    ("FocalNet", dict(_SWIN, focal_levels=[2, 2], focal_windows=[3, 3], num_labels=_K), False),
    ("Pvt", dict(_PYRAMID, image_size=64, num_encoder_blocks=4), False),
    ("PvtV2", dict(_PYRAMID, image_size=64), False),
    ("Segformer", dict(_PYRAMID, num_encoder_blocks=4), False),
    ("Hiera", dict(_HIERA, image_size=[64, 64], num_labels=_K), False),
    ("Cvt", dict(embed_dim=[16, 32, 64], depth=[1, 2, 3], num_heads=[1, 2, 2], num_labels=_K), False),
    ("Levit", dict(_LEVIT, image_size=64, num_labels=_K), True),
    ("SwiftFormer", dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64], num_labels=_K), True),
    ("MobileNetV1", dict(image_size=64, depth_multiplier=0.25, num_labels=_K), True),
    ("MobileNetV2", dict(image_size=64, depth_multiplier=0.35, num_labels=_K), True),
    ("MobileViT", dict(image_size=64, num_labels=_K), True),
    ("MobileViTV2", dict(image_size=64, width_multiplier=0.5, num_labels=_K), True),
    ("EfficientNet", dict(_EFFICIENT, image_size=64, num_labels=_K, initializer_range=1.0), True),
    ("HGNetV2", dict(num_labels=_K), True),
    ("TextNet", dict(num_labels=_K), True),
)  # fmt: skip


def calibrate_norms(model: nn.Module, size: int, steps: int = 3) -> int:
    """Give every BatchNorm the statistics of ``steps`` train-mode forwards of random ``(4, 3, size,
    size)`` images (cumulative averages); the model is left in eval mode. Returns how many norms."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(4, 3, size, size, generator=generator))
    model.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return len(norms)


def hf_more_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    import transformers as T

    for family, kwargs, calibrate in HF_MORE:
        config_class = getattr(T, f"{family}Config")
        model_class = getattr(T, f"{family}ForImageClassification")

        def build(config_class=config_class, model_class=model_class, kwargs=kwargs, calibrate=calibrate):
            torch.manual_seed(0)
            model = model_class(config_class(**kwargs))
            if calibrate:
                model.calibrated_norms = calibrate_norms(model, 64)
            return model

        yield f"hf:{model_class.__name__}", build, 64
