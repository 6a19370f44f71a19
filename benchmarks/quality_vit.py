"""Localisation quality of the attention methods against GradCAM/LayerCAM on a small ViT trained here.

    python benchmarks/quality_vit.py                     # train (minutes on 2 cores), then score
    python benchmarks/quality_vit.py --steps 300 --images 64   # a quick check

There is no trained ViT on this machine, so one is made: generated 32x32 images where the class is
carried by one object at a random place among distractors. Every image has a noisy background and
four 8x8 objects drawn in random colours at random, non-overlapping places on a 4x4 grid of 8x8
cells: one of them shows the class's shape (class 0: a plus, 1: a ring, 2: a diagonal, 3: a
checkerboard), the three others are distractors (filled squares, or an "L", which no class uses).
The ViT (timm ``VisionTransformer``: 32x32 input, 8x8 patches (a 4x4 grid, one object per patch),
width 48, 4 blocks, 4 heads, class token) is trained with AdamW on fresh batches (seeded), then
every method explains the true class of ``--images`` new images and is scored against the
object's box:

- pointing game: the share of images whose map maximum lies in the box (higher is better; chance
  is 1/16 for a box of 1/16 of the image);
- energy in box: the share of the map's sum inside the box (uniform map: 0.0625);
- ROAD combined (``pytorch_grad_cam.metrics.road.ROADCombined``, percentiles 20/40/60/80, noise
  0.01, seeded), on the class's softmax probability: (LeRF - MoRF) / 2, higher is better.

GradCAM and LayerCAM use ``model.blocks[-1].norm1`` (the last block's input to its attention, as
this README's ViT example) with ``vit_reshape_transform(t, 4, 4)``. The attention methods need no
layer. Progress goes to stderr; the table is rewritten to ``--output`` (Markdown) after every
method; Ctrl-C stops with one line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam import (  # noqa: E402
    AttentionGradCAM,
    AttentionRollout,
    GradCAM,
    GradientRollout,
    LayerCAM,
    LeGrad,
)
from pytorch_grad_cam.metrics.road import ROADCombined  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget  # noqa: E402
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform  # noqa: E402

SIZE, CELL, PATCH, CLASSES = 32, 8, 8, 4


def _shapes() -> torch.Tensor:
    """``(4 + 2, 8, 8)`` 0/1 masks: the 4 class shapes, then the 2 distractor shapes."""
    plus = torch.zeros(8, 8)
    plus[3:5, 1:7] = 1
    plus[1:7, 3:5] = 1
    ring = torch.ones(8, 8)
    ring[2:6, 2:6] = 0
    ring[[0, 0, 7, 7], [0, 7, 0, 7]] = 0
    diagonal = (torch.arange(8)[:, None] - torch.arange(8)[None, :]).abs().le(1).float()
    checker = ((torch.arange(8)[:, None] // 2 + torch.arange(8)[None, :] // 2) % 2).float()
    filled = torch.zeros(8, 8)
    filled[1:7, 1:7] = 1
    ell = torch.zeros(8, 8)
    ell[1:7, 1:3] = 1
    ell[5:7, 1:7] = 1
    return torch.stack([plus, ring, diagonal, checker, filled, ell])


SHAPES = _shapes()


def make_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``(B, 3, 32, 32)``, labels ``(B,)`` and the class object's box ``(B, 4)`` as y0, x0, y1, x1."""
    images = 0.3 * torch.randn(batch, 3, SIZE, SIZE, generator=generator)
    labels = torch.randint(0, CLASSES, (batch,), generator=generator)
    boxes = torch.zeros(batch, 4, dtype=torch.long)
    cells = SIZE // CELL
    for b in range(batch):
        places = torch.randperm(cells * cells, generator=generator)[:4]
        kinds = [int(labels[b])] + [4 + int(k) for k in torch.randint(0, 2, (3,), generator=generator)]
        for place, kind in zip(places.tolist(), kinds):
            y, x = (place // cells) * CELL, (place % cells) * CELL
            colour = 0.5 + torch.rand(3, 1, 1, generator=generator) * 1.5
            colour = colour * torch.where(torch.rand(3, 1, 1, generator=generator) < 0.5, -1.0, 1.0)
            mask = SHAPES[kind]
            images[b, :, y : y + CELL, x : x + CELL] = images[b, :, y : y + CELL, x : x + CELL] * (
                1 - mask
            ) + (colour * mask)
        y, x = (places[0].item() // cells) * CELL, (places[0].item() % cells) * CELL
        boxes[b] = torch.tensor([y, x, y + CELL, x + CELL])
    return images, labels, boxes


def build_model() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=SIZE,
        patch_size=PATCH,
        embed_dim=48,
        depth=4,
        num_heads=4,
        mlp_ratio=2.0,
        num_classes=CLASSES,
    )


def train(model: torch.nn.Module, steps: int, batch: int) -> float:
    """Train on fresh generated batches; returns the accuracy on 512 new images."""
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=steps)
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        images, labels, _ = make_batch(batch, generator)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == steps:
            print(
                f"\rtraining step {step}/{steps} loss {loss.item():.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(file=sys.stderr)
    model.eval()
    images, labels, _ = make_batch(512, torch.Generator().manual_seed(1))
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def methods(model: torch.nn.Module) -> dict[str, object]:
    layer = [model.blocks[-1].norm1]

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return vit_reshape_transform(t, SIZE // PATCH, SIZE // PATCH)

    return {
        "GradCAM (blocks[-1].norm1)": GradCAM(model, layer, reshape_transform=reshape),
        "LayerCAM (blocks[-1].norm1)": LayerCAM(model, layer, reshape_transform=reshape),
        "LeGrad (all blocks)": LeGrad(model),
        "AttentionRollout (mean)": AttentionRollout(model),
        "GradientRollout": GradientRollout(model),
        "AttentionGradCAM": AttentionGradCAM(model),
    }


def localisation(maps: np.ndarray, boxes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image: whether the map's maximum is in the box, and the map's share of energy in it."""
    hits, shares = [], []
    for cam, (y0, x0, y1, x1) in zip(maps, boxes.tolist()):
        y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
        hits.append(y0 <= y < y1 and x0 <= x < x1)
        total = float(cam.sum())
        shares.append(float(cam[y0:y1, x0:x1].sum()) / total if total > 0 else 0.0)
    return np.array(hits, dtype=float), np.array(shares)


def table(rows: list[dict], accuracy: float, images: int) -> str:
    lines = [
        f"Small ViT trained here (test accuracy {100 * accuracy:.1f} %), {images} generated images, "
        "true class explained:",
        "",
        "| Method | Pointing game | Energy in box | ROAD combined | s / image |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['pointing']:.3f} | {row['energy']:.3f} | {row['road']:.4f} "
            f"| {row['seconds']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=800, help="training steps")
    parser.add_argument("--batch", type=int, default=64, help="training batch size")
    parser.add_argument("--images", type=int, default=256, help="images scored")
    parser.add_argument("--output", type=Path, default=Path("quality_vit.md"))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: on a shared machine, more spin and stall)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        model = build_model()
        accuracy = train(model, args.steps, args.batch)
        print(f"test accuracy {100 * accuracy:.1f} %", file=sys.stderr)
        images, labels, boxes = make_batch(args.images, torch.Generator().manual_seed(2))
        targets = [ClassifierOutputSoftmaxTarget(int(k)) for k in labels]
        rows: list[dict] = []
        for name, cam in methods(model).items():
            start = time.perf_counter()
            maps = np.concatenate(
                [cam(images[i : i + 32], targets[i : i + 32]) for i in range(0, args.images, 32)]
            )
            seconds = (time.perf_counter() - start) / args.images
            hits, shares = localisation(maps, boxes)
            road = ROADCombined([20, 40, 60, 80], generator=torch.Generator().manual_seed(0))
            scores = np.concatenate(
                [
                    road(images[i : i + 32], maps[i : i + 32], targets[i : i + 32], model)
                    for i in range(0, args.images, 32)
                ]
            )
            rows.append(
                {
                    "method": name,
                    "pointing": hits.mean(),
                    "energy": shares.mean(),
                    "road": float(scores.mean()),
                    "seconds": seconds,
                }
            )
            print(f"{name}: pointing {hits.mean():.3f}, energy {shares.mean():.3f}", file=sys.stderr)
            args.output.write_text(table(rows, accuracy, args.images), encoding="utf-8")
        print(table(rows, accuracy, args.images))
    except KeyboardInterrupt:
        print("interrupted; the finished rows are in", args.output, file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
