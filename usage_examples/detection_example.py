"""One CAM per detected box, for torchvision's detectors (Faster/Mask R-CNN, RetinaNet, FCOS, SSD).

    python usage_examples/detection_example.py --model fasterrcnn_mobilenet_v3_large_fpn --method gradcam

The target layers and reshape transform are the defaults of
:func:`pytorch_grad_cam.detection.layers.detector_target_layers` (the backbone's feature
pyramid, levels resized to the finest grid and concatenated); each box the detector predicts is
explained by its own :class:`~pytorch_grad_cam.detection.targets.DetectionTarget`. One image
per box is written, ``{model}_{method}_box{k}.png``, into ``--output-dir`` (default
``detection_example_output/``), labelled with its class and score (``elephant 0.03``).

The model is built offline with random weights, so its boxes are meaningless; ``--weights FILE``
loads a state dict of the same architecture (COCO's 91 classes).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_rgb, load_weights  # noqa: E402
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

MODELS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
)
RANDOM_WEIGHTS_NOTE = (
    "note: {model} has random weights (offline), so its boxes are meaningless; for real ones pass --weights "
    "FILE, a state dict saved with torch.save(torchvision.models.detection.{model}(weights='DEFAULT')"
    ".state_dict(), FILE) where you have a network"
)


def build_model(name: str, weights: str | None, size: int) -> torch.nn.Module:
    from torchvision.models import detection

    torch.manual_seed(0)
    options = {"weights": None, "weights_backbone": None}
    if not name.startswith("ssd"):
        # min_size = max_size = the image size: the detector's transform does not rescale the photo
        options.update(min_size=size, max_size=size)
    if weights is None:
        # random weights score every box low: keep them all, to have boxes to explain
        options["box_score_thresh" if "rcnn" in name else "score_thresh"] = 0.0
    model = getattr(detection, name)(**options)
    if weights is None:
        print(RANDOM_WEIGHTS_NOTE.format(model=name))
    else:
        model.load_state_dict(load_weights(weights))  # a pickle holding code is refused, not loaded
    return model.eval()


def coco_names() -> list[str]:
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"])


def main(argv: Sequence[str] | None = None) -> list[Path]:
    arguments = parser(
        __doc__.split("\n\n")[0], 320, "a state dict of the chosen model to load", "detection_example_output"
    )
    arguments.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_fpn", choices=MODELS)
    args = arguments.parse_args(argv)
    check_arguments(args)
    rgb = load_rgb(args.image_path, args.image_size)
    model = build_model(args.model, args.weights, args.image_size)
    # torchvision's detectors normalise internally: the input is the [0, 1] photo
    input_tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    # the detector's own score threshold and NMS already ran; --score-threshold keeps fewer
    (found,) = model_detections(model, input_tensor, score_threshold=args.score_threshold)
    found = top_boxes(found, args.max_boxes)
    if found.boxes.shape[0] == 0:
        raise SystemExit("the detector predicts no box here; lower --score-threshold")
    names = labels_of(coco_names())
    print(f"explaining {found.boxes.shape[0]} boxes: {[names(int(k)) for k in found.labels]}")
    target_layers, reshape_transform = detector_target_layers(model)
    cam = get_method(args.method)(model, target_layers, reshape_transform=reshape_transform)
    maps = explain_each_box(cam, input_tensor, found)
    written = save_box_maps(rgb, maps, found, names, args.output_dir, f"{args.model}_{args.method}")
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
