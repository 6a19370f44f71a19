"""Tutorial: explain what a segmentation network looks at for each class's pixels.

    python docs/tutorials/segmentation.py            # about a minute on a CPU
    python docs/tutorials/segmentation.py --quick    # seconds, an undertrained model (the tests)

No trained segmenter can be downloaded here, so one is trained in seconds: a small fully
convolutional network labelling every pixel of the generated shapes (``shapes.py``) as background
(distractor shapes included) or one of the four class shapes. Writes ``segmentation_classes.png``:
for three test pictures with two class shapes each, the predicted labels, and GradCAM and
SegEigenCAM of each class's predicted pixels (``SemanticSegmentationTarget``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402
from pictures import arguments, grid, record, tile, to_rgb  # noqa: E402

from pytorch_grad_cam import GradCAM, SegEigenCAM  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402

#: one colour per label: background, plus, ring, diagonal, checkerboard
COLOURS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 60], [70, 110, 240], [240, 200, 40]], dtype=np.uint8)


def build_segmenter() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.ReLU(),  # 16 x 16: the layer explained
        nn.Upsample(scale_factor=2, mode="bilinear"),
        nn.Conv2d(32, 1 + shapes.CLASSES, 3, padding=1),
    )  # fmt: skip


def pixel_loss(model: nn.Module, data) -> torch.Tensor:
    images, _, _, label_maps = data
    return nn.functional.cross_entropy(model(images), label_maps)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    segmenter = shapes.train(build_segmenter(), 20 if args.quick else 400, pixel_loss, lr=1e-2)

    generator = torch.Generator().manual_seed(5)
    rows, agreement = [], []
    for picture in range(3):
        first, second = torch.randperm(shapes.CLASSES, generator=generator)[:2].tolist()
        places = torch.randperm(16, generator=generator)[:3].tolist()
        image, truth = shapes.draw([first, second, shapes.CLASSES], places, generator)
        x = image[None]
        with torch.no_grad():
            labels = segmenter(x)[0].argmax(0)
        agreement.append(float((labels == truth).float().mean()))
        rgb = to_rgb(image)
        row = [tile(rgb), tile(COLOURS[labels.numpy()])]
        for kind in (first, second):
            mask = (labels == kind + 1).float()  # the pixels the model gives this class
            target = [SemanticSegmentationTarget(kind + 1, mask)]
            for method in (GradCAM, SegEigenCAM):
                with method(segmenter, [segmenter[5]]) as cam:
                    row.append(tile(show_cam_on_image(rgb, cam(x, target)[0], use_rgb=True)))
        rows.append(row)
        print(
            f"picture {picture}: {shapes.CLASS_NAMES[first]} and {shapes.CLASS_NAMES[second]}, "
            f"{agreement[-1]:.1%} of the pixels labelled right"
        )
    titles = ["image", "labels", "GradCAM: 1st", "SegEigenCAM: 1st", "GradCAM: 2nd", "SegEigenCAM: 2nd"]
    written = grid(rows, titles, args.out / "segmentation_classes.png")
    record([written], "segmentation", args.quick)


if __name__ == "__main__":
    main()
