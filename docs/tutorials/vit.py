"""Tutorial: a vision transformer explained by GradCAM and by the four attention methods.

    python docs/tutorials/vit.py            # about a minute on a CPU (most of it training)
    python docs/tutorials/vit.py --quick    # a few seconds, an undertrained model (the tests)

No trained ViT can be downloaded here, so one is trained: a timm ``VisionTransformer`` (32 x 32
input, 8 x 8 patches, 4 blocks) on the generated shapes of ``shapes.py``, where the class is the
one class shape among distractors and its place is known. Writes ``vit_methods.png``: four test
images (the class shape boxed) and each method's map, and prints each method's share of the map
inside the box over 64 test images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402
from pictures import arguments, energy_in_box, grid, record, tile, to_rgb  # noqa: E402

from pytorch_grad_cam import AttentionGradCAM, AttentionRollout, GradCAM, GradientRollout, LeGrad  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def build_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=48, depth=4, num_heads=4, mlp_ratio=2.0, num_classes=4
    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    vit = shapes.train(build_vit(), 40 if args.quick else 700, shapes.classification_loss, lr=2e-3)
    print(f"test accuracy {shapes.accuracy(vit):.1%}")

    images, labels, boxes, _ = shapes.batch(16 if args.quick else 64, torch.Generator().manual_seed(7))
    targets = [ClassifierOutputTarget(int(k)) for k in labels]
    methods = {
        "GradCAM": GradCAM(vit),  # layer and token layout chosen: blocks.3.norm1, 1 prefix + 4x4
        "LeGrad": LeGrad(vit),
        "AttentionRollout": AttentionRollout(vit),  # no class: where the class token looks
        "GradientRollout": GradientRollout(vit),
        "AttentionGradCAM": AttentionGradCAM(vit),
    }
    maps = {name: method(images, targets) for name, method in methods.items()}
    print(methods["GradCAM"].layer_choice.reason)
    for name, found in maps.items():
        share = np.mean([energy_in_box(cam, box) for cam, box in zip(found, boxes.tolist())])
        print(f"{name:17s} share of the map in the class shape's box: {share:.2f} (uniform: 0.06)")

    rows = []
    for i in range(4):
        rgb = to_rgb(images[i])
        rows.append(
            [tile(rgb, box=boxes[i].tolist())]
            + [
                tile(show_cam_on_image(rgb, maps[name][i], use_rgb=True), box=boxes[i].tolist())
                for name in methods
            ]
        )
    written = grid(
        rows,
        ["image", *methods],
        args.out / "vit_methods.png",
        row_titles=[shapes.CLASS_NAMES[int(k)] for k in labels[:4]],
    )
    record([written], "vit", args.quick)


if __name__ == "__main__":
    main()
