"""Tutorial: explain each box of an object detector.

    python docs/tutorials/detection.py            # about a minute on a CPU (most of it training)
    python docs/tutorials/detection.py --quick    # seconds, an undertrained detector (the tests)

No trained detector can be downloaded here, so one is trained: torchvision's ``FCOS`` with a small
backbone, on 64 x 64 pictures of the generated shapes (``shapes.py``) where each class shape is
an object to find and the distractor shapes are not. Writes ``detection_boxes.png``: for three
test pictures, the detections, the map of every box together (``targets=None``) and the map of
each of the first two boxes (``DetectionTarget``).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import ImageDraw
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402
from pictures import arguments, grid, record, tile  # noqa: E402

from pytorch_grad_cam import LayerCAM  # noqa: E402
from pytorch_grad_cam.detection import detector_target_layers  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import DetectionTarget  # noqa: E402


class Backbone(nn.Module):
    """Four convolutions to a stride-4 map of 32 channels, as the one level of a feature pyramid."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.out_channels = 32

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict([("0", self.body(x))])


def pictures(count: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[dict]]:
    """``count`` 64 x 64 pictures in [0, 1] with one or two class shapes (the objects, labels 1-4)
    and one distractor, and their boxes as ``x1, y1, x2, y2`` pixels."""
    images, targets = [], []
    for _ in range(count):
        objects = int(torch.randint(1, 3, (1,), generator=generator))
        labels = torch.randint(0, shapes.CLASSES, (objects,), generator=generator).tolist()
        places = torch.randperm(16, generator=generator)[: objects + 1].tolist()
        kinds = labels + [shapes.CLASSES + int(torch.randint(0, 2, (1,), generator=generator))]
        image, _ = shapes.draw(kinds, places, generator)
        image = nn.functional.interpolate(image[None], scale_factor=2, mode="nearest")[0]
        boxes = [
            [(p % 4) * 16, (p // 4) * 16, (p % 4) * 16 + 16, (p // 4) * 16 + 16] for p in places[:objects]
        ]
        images.append(((image + 2) / 4).clamp(0, 1))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float), "labels": torch.tensor(labels) + 1})
    return images, targets


def train_detector(steps: int) -> nn.Module:
    torch.manual_seed(0)
    detector = FCOS(
        Backbone(), num_classes=1 + shapes.CLASSES, min_size=64, max_size=64, image_mean=[0.5] * 3,
        image_std=[0.25] * 3, anchor_generator=AnchorGenerator(sizes=((16,),), aspect_ratios=((1.0,),)),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    pool = [pictures(16, generator) for _ in range(40)]
    optimiser = torch.optim.Adam(detector.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    detector.train()
    for step in range(1, steps + 1):
        loss = sum(detector(*pool[step % len(pool)]).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 25 == 0 or step == steps:
            print(f"\rtraining: step {step}/{steps}, loss {loss.item():.3f}", end="", flush=True)
    print()
    return detector.eval()


def draw_boxes(picture, boxes, labels, scale: int) -> None:
    pen = ImageDraw.Draw(picture)
    for box, label in zip(boxes.tolist(), labels.tolist()):
        x1, y1, x2, y2 = (v * scale for v in box)
        pen.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(255, 255, 255), width=2)
        pen.text((x1 + 2, y1 + 1), shapes.CLASS_NAMES[label - 1], fill=(255, 255, 255))


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    detector = train_detector(10 if args.quick else 150)
    detector.score_thresh = 0.0 if args.quick else 0.5  # an undertrained detector: keep its best guesses

    images, _ = pictures(3, torch.Generator().manual_seed(99))
    batch = torch.stack(images)
    with torch.no_grad():
        found = detector(list(batch))
    layers, reshape = detector_target_layers(detector)  # [detector.backbone], the pyramid as one map
    # GradCAM's channel weights (mean gradients) are negative for every channel here, a blank map
    # (a BlankMapWarning says so); LayerCAM weighs each position by its own positive gradient
    cam = LayerCAM(detector, layers, reshape_transform=reshape)
    rows = []
    for image, detections in zip(batch, found):
        boxes, labels = detections["boxes"][:2], detections["labels"][:2]
        print(
            f"boxes {boxes.round().int().tolist()}, labels {[shapes.CLASS_NAMES[k - 1] for k in labels]}, "
            f"scores {[round(float(s), 2) for s in detections['scores'][:2]]}"
        )
        rgb = image.permute(1, 2, 0).numpy().astype(np.float32)
        every_box = cam(image[None])[0]  # targets=None: all the detector's boxes, one map
        # one map per box: the image repeated once per target
        per_box = cam(
            image[None].repeat(len(boxes), 1, 1, 1),
            [DetectionTarget(labels[k : k + 1], boxes[k : k + 1]) for k in range(len(boxes))],
        )
        row = [tile(rgb, scale=2), tile(show_cam_on_image(rgb, every_box, use_rgb=True), scale=2)]
        draw_boxes(row[0], boxes, labels, 2)
        for k in range(2):
            if k < len(boxes):
                row.append(tile(show_cam_on_image(rgb, per_box[k], use_rgb=True), scale=2))
                draw_boxes(row[-1], boxes[k : k + 1], labels[k : k + 1], 2)
            else:
                row.append(tile(rgb * 0 + 1, scale=2))  # no second box: a white tile
        rows.append(row)
    written = grid(rows, ["detections", "every box", "box 1", "box 2"], args.out / "detection_boxes.png")
    record([written], "detection", args.quick)


if __name__ == "__main__":
    main()
