"""A CAM of a torchvision Faster R-CNN's detections.

    python usage_examples/faster_rcnn_example.py --image-path photo.jpg --method eigencam

The CAM explains :class:`~pytorch_grad_cam.utils.model_targets.FasterRCNNBoxScoreTarget`: how well
the detector finds its own detections (IoU + score). The target layer is the backbone (ResNet-50 +
feature pyramid), whose levels :func:`~pytorch_grad_cam.utils.reshape_transforms.fasterrcnn_reshape_transform`
turns into one map. EigenCAM (gradient-free) is the default, as in pytorch-grad-cam's tutorial.

The model is built offline with random weights (``weights=None, weights_backbone=None``), so the
detections are meaningless; ``--weights`` loads a real state dict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_rgb, load_weights, save_rgb  # noqa: E402

from pytorch_grad_cam.registry import METHODS, get_method  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget  # noqa: E402
from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform  # noqa: E402

RANDOM_WEIGHTS_NOTE = (
    "note: the detector has random weights (offline), so its boxes are meaningless; for real ones pass "
    "--weights FILE, a state dict of torchvision's fasterrcnn_resnet50_fpn "
    "(save fasterrcnn_resnet50_fpn(weights='DEFAULT').state_dict() with torch.save where you have a network)"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-path", default=None, help="the photo (default: scikit-image's coffee cup)")
    parser.add_argument("--method", default="eigencam", choices=sorted(METHODS), help="the CAM method")
    parser.add_argument("--use-cuda", action="store_true", help="run on CUDA")
    parser.add_argument("--weights", default=None, help="a fasterrcnn_resnet50_fpn state dict to load")
    parser.add_argument(
        "--image-size", type=int, default=512, help="the photo is resized to this square size"
    )
    parser.add_argument(
        "--score-threshold", type=float, default=0.9, help="keep detections scoring at least this"
    )
    parser.add_argument(
        "--output-dir",
        default=".",
        help="where to write faster_rcnn_<method>_cam.jpg (default: .)",
    )
    parser.add_argument("--output", default=None, help="the overlay's file, instead (overrides --output-dir)")
    return parser.parse_args(argv)


def build_model(weights: str | None, size: int) -> torch.nn.Module:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    # min_size = max_size = the image size: the detector's transform does not rescale the photo.
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=size, max_size=size)
    if weights is None:
        print(RANDOM_WEIGHTS_NOTE)
    else:
        model.load_state_dict(load_weights(weights))  # a pickle holding code is refused, not loaded
    return model.eval()


def main(argv: Sequence[str] | None = None) -> np.ndarray:
    args = parse_args(argv)
    device = torch.device("cuda" if args.use_cuda else "cpu")
    if args.use_cuda and not torch.cuda.is_available():
        raise SystemExit("--use-cuda: CUDA is not available")
    rgb = load_rgb(args.image_path, args.image_size)
    model = build_model(args.weights, args.image_size).to(device)
    # torchvision's detectors normalise internally: the input is the [0, 1] photo.
    input_tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(device)

    with torch.no_grad():
        detections = model(input_tensor)[0]
    keep = detections["scores"] >= args.score_threshold
    if not bool(keep.any()):
        print(f"no detection scores {args.score_threshold} or more; explaining the top 3 instead")
        keep = torch.zeros_like(keep)
        keep[: min(3, keep.numel())] = True
    boxes = detections["boxes"][keep].cpu()
    labels = detections["labels"][keep].cpu()
    print(f"explaining {len(boxes)} detections: labels {labels.tolist()}")

    target = FasterRCNNBoxScoreTarget(labels=labels, bounding_boxes=boxes)
    cam = get_method(args.method)(
        model, [model.backbone], reshape_transform=fasterrcnn_reshape_transform, device=device
    )
    grayscale = cam(input_tensor, [target])[0]
    overlay = Image.fromarray(show_cam_on_image(rgb, grayscale, use_rgb=True))
    draw = ImageDraw.Draw(overlay)
    for box in boxes.tolist():
        draw.rectangle(box, outline=(255, 255, 255), width=2)
    output = Path(args.output or Path(args.output_dir) / f"faster_rcnn_{args.method}_cam.jpg")
    output.parent.mkdir(parents=True, exist_ok=True)
    save_rgb(np.asarray(overlay), str(output))
    print(f"wrote {output}")
    return grayscale


if __name__ == "__main__":
    main()
