"""One CAM per detected box, for a HuggingFace detection transformer (DETR, Conditional DETR, RT-DETR).

    python usage_examples/detr_example.py --weights path/to/detr-resnet-50 --method gradcam

The target layers are the defaults of
:func:`pytorch_grad_cam.detection.layers.detector_target_layers` (DETR: the backbone's map
projected for the encoder; RT-DETR: the hybrid encoder's three levels); each box the model
predicts (score above 0.5, as HuggingFace's ``post_process_object_detection``) is explained by its
own target, matched to the query that predicted it. One image per box is written,
``{kind}_{method}_box{k}.png``.

Without ``--weights`` a small model of the chosen ``--kind`` is built from its config with random
weights (offline, no backbone download); ``--weights DIR`` loads a saved model
(``from_pretrained`` of a local directory, or a hub name where you have a network).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_rgb  # noqa: E402
from _detection_common import (  # noqa: E402
    check_arguments,
    explain_each_box,
    labels_of,
    parser,
    save_box_maps,
    top_boxes,
)

from pytorch_grad_cam.detection.layers import detector_target_layers  # noqa: E402
from pytorch_grad_cam.detection.outputs import model_detections  # noqa: E402
from pytorch_grad_cam.registry import get_method  # noqa: E402

KINDS = ("detr", "conditional-detr", "rt-detr")
RANDOM_WEIGHTS_NOTE = (
    "note: this {kind} model is small and has random weights (offline), so its boxes are meaningless; for "
    "real ones pass --weights DIR (e.g. facebook/detr-resnet-50 saved with save_pretrained)"
)
#: ImageNet statistics, as the DETR image processors normalise
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def small_config(kind: str):
    """A small random config: a 2-stage (DETR) or 4-stage (RT-DETR) ResNet, one 16-wide layer each."""
    import transformers

    common = {"use_pretrained_backbone": False, "use_timm_backbone": False, "d_model": 32, "num_labels": 5}
    common.update(decoder_layers=2, decoder_attention_heads=2, decoder_ffn_dim=64)
    if kind == "rt-detr":
        backbone = transformers.RTDetrResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32, 32, 32],
            depths=[1, 1, 1, 1],
            out_features=["stage2", "stage3", "stage4"],
            layer_type="basic",
        )
        return transformers.RTDetrForObjectDetection, transformers.RTDetrConfig(
            backbone_config=backbone,
            encoder_hidden_dim=32,
            encoder_in_channels=[32, 32, 32],
            decoder_in_channels=[32, 32, 32],
            encoder_ffn_dim=64,
            encoder_attention_heads=2,
            num_queries=20,
            decoder_n_points=2,
            num_denoising=0,
            anchor_image_size=None,
            **common,
        )
    backbone = {"model_type": "resnet", "depths": [1, 1], "hidden_sizes": [16, 32], "embedding_size": 16}
    config_class, model_class = (
        (transformers.DetrConfig, transformers.DetrForObjectDetection)
        if kind == "detr"
        else (transformers.ConditionalDetrConfig, transformers.ConditionalDetrForObjectDetection)
    )
    return model_class, config_class(
        backbone_config={**backbone, "out_features": ["stage2"]},
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        num_queries=20,
        **common,
    )


def build_model(kind: str, weights: str | None) -> torch.nn.Module:
    try:
        import transformers
    except ImportError as error:
        raise SystemExit("this example needs transformers: pip install transformers") from error
    torch.manual_seed(0)
    if weights is not None:
        return transformers.AutoModelForObjectDetection.from_pretrained(weights).eval()
    model_class, config = small_config(kind)
    print(RANDOM_WEIGHTS_NOTE.format(kind=kind))
    return model_class(config).eval()


def main(argv: Sequence[str] | None = None) -> list[Path]:
    arguments = parser(
        __doc__.split("\n\n")[0],
        320,
        "a saved HuggingFace detection model (directory)",
        "detr_example_output",
    )
    arguments.add_argument(
        "--kind", default="detr", choices=KINDS, help="the architecture built without --weights"
    )
    args = arguments.parse_args(argv)
    check_arguments(args)
    rgb = load_rgb(args.image_path, args.image_size)
    model = build_model(args.kind, args.weights)
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    input_tensor = (image - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    (found,) = model_detections(model, input_tensor, score_threshold=args.score_threshold)
    if found.boxes.shape[0] == 0:
        print("no box scores above the threshold; explaining the highest-scoring ones")
        (found,) = model_detections(model, input_tensor, score_threshold=0.0)
    found = top_boxes(found, args.max_boxes)
    names = labels_of(dict(model.config.id2label))
    print(f"explaining {found.boxes.shape[0]} boxes: {[names(int(k)) for k in found.labels]}")
    target_layers, reshape_transform = detector_target_layers(model)
    cam = get_method(args.method)(model, target_layers, reshape_transform=reshape_transform)
    maps = explain_each_box(cam, input_tensor, found)
    prefix = f"{args.kind.replace('-', '')}_{args.method}"
    written = save_box_maps(rgb, maps, found, names, args.output_dir, prefix)
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
