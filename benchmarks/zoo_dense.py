"""The zoo's segmentation rows: torchvision's and HuggingFace's semantic segmenters with random
weights and :data:`CLASSES` classes, explained with ``targets=None`` on their dense output, and
HuggingFace Mask2Former (its mask logits are the dense output: a query's mask is a class) and two
depth estimators (a ``(B, H, W)`` output: ``targets=None`` is refused, there is no class to pick).

Used by ``benchmarks/zoo.py`` (``--only segmentation``). With no targets a CAM explains each image's
most frequent predicted class over its own predicted mask; the search must pick a feature map, not
the class-score map the output is made of, so a row is ``ok`` only when the chosen layer's channels
differ from :data:`CLASSES` (no feature map of these configs has 5 channels) as well.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn
from zoo_more import calibrate_norms

from pytorch_grad_cam.cli.segmentation import TORCHVISION_SEGMENTERS

#: the class count of every segmenter here (a number no feature map of these models has)
CLASSES = 5

_VIT = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
    patch_size=8, num_labels=CLASSES,
)  # fmt: skip
_LEVELS = ["stage1", "stage2", "stage3", "stage4"]
_CONVNEXT = dict(
    model_type="convnext", hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], out_features=_LEVELS
)
_SWIN = dict(
    model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=2,
    image_size=64, out_features=_LEVELS,
)  # fmt: skip

#: torchvision segmenters (``torchvision.models.get_model`` names, those ``cam.py --task
#: segmentation`` takes), at 64x64
TORCHVISION = TORCHVISION_SEGMENTERS

#: HuggingFace segmenters: (row name, model class, config class, config kwargs, input size, calibrate)
HUGGINGFACE = (
    (
        "Segformer",
        "SegformerForSemanticSegmentation",
        "SegformerConfig",
        dict(
            num_encoder_blocks=4, depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64],
            num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=32, num_labels=CLASSES,
        ),
        64,
        False,
    ),
    (
        "UperNet/convnext",
        "UperNetForSemanticSegmentation",
        "UperNetConfig",
        dict(backbone_config=_CONVNEXT, hidden_size=32, auxiliary_in_channels=32, num_labels=CLASSES),
        64,
        False,
    ),
    (
        "UperNet/swin",
        "UperNetForSemanticSegmentation",
        "UperNetConfig",
        dict(backbone_config=_SWIN, hidden_size=32, auxiliary_in_channels=64, num_labels=CLASSES),
        64,
        False,
    ),
    (
        "DPT",
        "DPTForSemanticSegmentation",
        "DPTConfig",
        dict(
            _VIT, neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=32, backbone_out_indices=[0, 1, 2, 3]
        ),
        64,
        False,
    ),
    ("Beit", "BeitForSemanticSegmentation", "BeitConfig", dict(_VIT, out_indices=[0, 1, 2, 3]), 64, False),
    (
        "Data2VecVision",
        "Data2VecVisionForSemanticSegmentation",
        "Data2VecVisionConfig",
        dict(_VIT, out_indices=[0, 1, 2, 3]),
        64,
        False,
    ),
    (
        "MobileViT",
        "MobileViTForSemanticSegmentation",
        "MobileViTConfig",
        dict(image_size=128, num_labels=CLASSES),
        128,
        True,
    ),
    (
        "MobileViTV2",
        "MobileViTV2ForSemanticSegmentation",
        "MobileViTV2Config",
        dict(image_size=128, width_multiplier=0.5, num_labels=CLASSES),
        128,
        True,
    ),
    (
        "MobileNetV2",
        "MobileNetV2ForSemanticSegmentation",
        "MobileNetV2Config",
        dict(image_size=128, depth_multiplier=0.35, num_labels=CLASSES),
        128,
        True,
    ),
    (
        "Mask2Former/swin",
        "Mask2FormerForUniversalSegmentation",
        "Mask2FormerConfig",
        dict(
            backbone_config=_SWIN, hidden_dim=32, mask_feature_size=32, feature_size=32, num_queries=10,
            encoder_layers=1, decoder_layers=2, num_labels=CLASSES, encoder_feedforward_dim=64,
            dim_feedforward=64, num_attention_heads=2,
        ),
        64,
        False,
    ),
    (
        "GLPN/depth",
        "GLPNForDepthEstimation",
        "GLPNConfig",
        dict(
            num_encoder_blocks=4, depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64],
            num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=16,
        ),
        64,
        False,
    ),
    (
        "DPT/depth",
        "DPTForDepthEstimation",
        "DPTConfig",
        dict(
            _VIT, neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=32,
            backbone_out_indices=[0, 1, 2, 3], head_hidden_size=16,
        ),
        64,
        False,
    ),
)  # fmt: skip


def dense_models() -> Iterator[tuple[str, Callable[[], nn.Module], int]]:
    import torchvision
    import transformers as T

    for name in TORCHVISION:

        def build_tv(name=name) -> nn.Module:
            torch.manual_seed(0)
            return torchvision.models.get_model(
                name, weights=None, weights_backbone=None, num_classes=CLASSES
            )

        yield f"seg:tv:{name}", build_tv, 64
    for row_name, model_name, config_name, kwargs, size, calibrate in HUGGINGFACE:

        def build_hf(
            model_name=model_name, config_name=config_name, kwargs=kwargs, size=size, calibrate=calibrate
        ):
            torch.manual_seed(0)
            model = getattr(T, model_name)(getattr(T, config_name)(**kwargs))
            if calibrate:
                model.calibrated_norms = calibrate_norms(model, size)
            return model

        yield f"seg:hf:{row_name}", build_hf, size


def dense_check(row: dict) -> dict:
    """The segmentation part of a row: whether the chosen layer is a feature map (its channels are
    not :data:`CLASSES`, nor one, a depth map's); ``ok`` is False when it is a class-score map."""
    feature = row.get("channels") not in (CLASSES, 1)
    return {"classes": CLASSES, "feature_layer": feature, "ok": bool(row.get("ok")) and feature}
