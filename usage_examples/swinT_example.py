"""A CAM of a Swin transformer: timm's Swin-T, target ``layers[-1].blocks[-1].norm1``, 7x7 tokens.

    python usage_examples/swinT_example.py --image-path examples/chelsea.png --method gradcam

Swin has no class token: the last stage's 7x7 tokens (``(B, 7, 7, 768)`` in timm >= 0.9, ``(B, 49, 768)``
before) become ``(B, 768, 7, 7)`` maps through
:func:`~pytorch_grad_cam.utils.reshape_transforms.swinT_reshape_transform`. Without ``--pretrained``
the model has random weights (this runs offline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import timm
import torch
from PIL import Image

from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform

MODEL = "swin_tiny_patch4_window7_224"


def get_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-path", default="examples/chelsea.png", help="the photo")
    parser.add_argument("--method", default="gradcam", choices=list(METHODS), help="the CAM method")
    parser.add_argument("--use-cuda", action="store_true", help="run on CUDA")
    parser.add_argument("--aug-smooth", action="store_true", help="test-time augmentation smoothing")
    parser.add_argument("--eigen-smooth", action="store_true", help="principal component smoothing")
    parser.add_argument("--pretrained", action="store_true", help="download timm's ImageNet weights")
    parser.add_argument("--output-dir", default=".", help="where to write swint_<method>_*.jpg (default: .)")
    args = parser.parse_args(argv)
    if args.use_cuda and not torch.cuda.is_available():
        parser.error("--use-cuda: CUDA is not available here")
    if not Path(args.image_path).is_file():
        parser.error(f"--image-path {args.image_path}: no such file")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    args = get_args(argv)
    try:
        model = timm.create_model(MODEL, pretrained=args.pretrained).eval()
    except OSError as error:  # --pretrained without a network
        print(
            f"error: could not download {MODEL}'s weights ({error}); leave out --pretrained", file=sys.stderr
        )
        raise SystemExit(2) from None
    if not args.pretrained:
        print(f"note: {MODEL} has random weights here (offline); --pretrained downloads ImageNet ones")
    target_layers = [model.layers[-1].blocks[-1].norm1]

    config = timm.data.resolve_data_config({}, model=model)  # input size and normalisation, no download
    height, width = config["input_size"][1:]
    rgb = Image.open(args.image_path).convert("RGB").resize((width, height))
    rgb_img = np.asarray(rgb, dtype=np.float32) / 255
    input_tensor = preprocess_image(rgb_img, mean=config["mean"], std=config["std"])

    cam_class = METHODS[args.method].cls
    cam = cam_class(
        model=model,
        target_layers=target_layers,
        reshape_transform=swinT_reshape_transform,
        device="cuda" if args.use_cuda else None,
    )
    # targets=None: the top-scoring class.
    grayscale_cam = cam(
        input_tensor=input_tensor, targets=None, aug_smooth=args.aug_smooth, eigen_smooth=args.eigen_smooth
    )[0]

    output = Path(args.output_dir) / f"swint_{args.method}_cam.jpg"
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(show_cam_on_image(rgb_img, grayscale_cam, use_rgb=True)).save(output)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
