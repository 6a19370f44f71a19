"""A CAM of a torchvision semantic segmentation model (DeepLabV3) for one class's pixels.

    python usage_examples/segmentation_example.py --image-path photo.jpg --category cat --method gradcam

The CAM explains :class:`~pytorch_grad_cam.utils.model_targets.SemanticSegmentationTarget`: the sum of
the class's scores over the pixels the model assigns to it. The target layer is the ResNet-50
backbone's last stage. DeepLabV3 returns a dict; a small wrapper returns its ``"out"`` tensor.

The model is built offline with random weights (``weights=None, weights_backbone=None``), so its
segmentation is meaningless; ``--weights`` loads a real state dict.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_rgb, load_weights, save_rgb  # noqa: E402

from pytorch_grad_cam.registry import METHODS, get_method  # noqa: E402
from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402

#: The 21 Pascal VOC classes of torchvision's segmentation weights.
VOC_CLASSES = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

RANDOM_WEIGHTS_NOTE = (
    "note: the segmenter has random weights (offline), so its masks are meaningless; for real ones pass "
    "--weights FILE, a state dict of torchvision's deeplabv3_resnet50 "
    "(save deeplabv3_resnet50(weights='DEFAULT').state_dict() with torch.save where you have a network)"
)


class SegmentationOutput(nn.Module):
    """Return the ``"out"`` tensor of a torchvision segmentation model's dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-path", default=None, help="the photo (default: scikit-image's coffee cup)")
    parser.add_argument("--method", default="gradcam", choices=sorted(METHODS), help="the CAM method")
    parser.add_argument("--use-cuda", action="store_true", help="run on CUDA")
    parser.add_argument("--category", default="cat", choices=VOC_CLASSES, help="the class to explain")
    parser.add_argument(
        "--weights", default=None, help="a deeplabv3_resnet50 state dict to load (VOC classes)"
    )
    parser.add_argument(
        "--image-size", type=int, default=512, help="the photo is resized to this square size"
    )
    parser.add_argument("--output", default="segmentation_cam.jpg", help="where to save the overlay")
    return parser.parse_args(argv)


def build_model(weights: str | None) -> nn.Module:
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(0)
    model = deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=len(VOC_CLASSES), aux_loss=False
    )
    if weights is None:
        print(RANDOM_WEIGHTS_NOTE)
    else:
        state = load_weights(weights)  # a pickle holding code is refused, not loaded
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux_classifier.")})
    return SegmentationOutput(model).eval()


def main(argv: Sequence[str] | None = None) -> np.ndarray:
    args = parse_args(argv)
    device = torch.device("cuda" if args.use_cuda else "cpu")
    if args.use_cuda and not torch.cuda.is_available():
        raise SystemExit("--use-cuda: CUDA is not available")
    rgb = load_rgb(args.image_path, args.image_size)
    model = build_model(args.weights).to(device)
    input_tensor = preprocess_image(rgb).to(device)

    with torch.no_grad():
        predicted = model(input_tensor)[0].argmax(dim=0).cpu()
    category = VOC_CLASSES.index(args.category)
    mask = (predicted == category).float().numpy()
    if not mask.any():
        category = int(predicted.flatten().mode().values)
        mask = (predicted == category).float().numpy()
        print(f"no pixel is predicted as {args.category!r}; explaining {VOC_CLASSES[category]!r} instead")
    print(f"explaining {VOC_CLASSES[category]!r} on {int(mask.sum())} pixels")

    cam = get_method(args.method)(model, [model.model.backbone.layer4], device=device)
    grayscale = cam(input_tensor, [SemanticSegmentationTarget(category, mask)])[0]
    save_rgb(show_cam_on_image(rgb, grayscale, use_rgb=True), args.output)
    print(f"wrote {args.output}")
    return grayscale


if __name__ == "__main__":
    main()
