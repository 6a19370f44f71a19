"""Known-answer audit: on shapes with known masks, does each metric tell a faithful map from a trivial one?

    python benchmarks/audit_known_answer.py [--images 200]

A tiny CNN (benchmarks/audit_shapes.py) is trained here, seeded, in about a minute on 3000 synthetic
images (64x64: one circle, square or triangle on clutter; the class is the shape). Then each CAM
method (target layer: the last conv's ReLU, 16x16) and each baseline is scored on held-out images
against the true object masks: pointing game (tolerance 15 px at 224 px, scaled to 4 px here),
energy pointing game, relevance mass and rank, IoU at half the maximum; and the sanity checks:
cascading model-parameter randomisation (the final Spearman and SSIM, every layer random) and the
random-logit SSIM. Expected: GradCAM localises well and passes the randomisation test (its maps
change); the random map scores chance; the Sobel edge map keeps similarity 1 (fails it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_shapes import make_dataset, train  # noqa: E402

from pytorch_grad_cam.metrics.annotations import mask_box  # noqa: E402
from pytorch_grad_cam.metrics.audit import audit_batch, format_leaderboard, leaderboard  # noqa: E402
from pytorch_grad_cam.metrics.explainers import baseline_explainer, cam_explainer  # noqa: E402
from pytorch_grad_cam.metrics.localisation import boxes_to_mask  # noqa: E402

METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "scorecam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, seconds, accuracy = train(seed=0)
    print(f"trained ShapeNet in {seconds:.0f} s; held-out accuracy {accuracy:.3f}")
    images, masks, labels = make_dataset(args.images, seed=2000)
    box_masks = torch.stack([boxes_to_mask(mask_box(mask), tuple(mask.shape)) for mask in masks])
    layer = model.features[-1]
    explainers = {name: cam_explainer(model, name, layer) for name in METHODS}
    explainers.update({name: baseline_explainer(name) for name in ("random", "centre", "edges")})
    per_image: dict[str, dict[str, list[float]]] = {name: {} for name in explainers}
    curves: dict[str, list[torch.Tensor]] = {name: [] for name in explainers}
    started = time.perf_counter()
    for start in range(0, args.images, args.batch_size):
        batch = slice(start, start + args.batch_size)
        audit = audit_batch(
            model,
            images[batch],
            explainers,
            classes=labels[batch].tolist(),  # the true class (the model is 98% right)
            masks=(box_masks[batch], masks[batch]),
            num_classes=3,
            tolerance=15 * 64 / 224,
        )
        for name, scores in audit.scores.items():
            for metric, values in scores.items():
                per_image[name].setdefault(metric, []).extend(values.tolist())
            curves[name].append(audit.curves[name])
    print(f"audited {args.images} images in {time.perf_counter() - started:.0f} s\n")
    table = leaderboard(per_image)
    print(format_leaderboard(table))
    # the randomisation test passed: the map keeps less than half its ranking once every layer is
    # random (the upper end of the final Spearman's 95% interval below 0.5)
    verdict = {name: rows["randomisation_spearman"].high < 0.5 for name, rows in table.items()}
    print("\nrandomisation test (final Spearman's interval below 0.5):")
    print("passed: " + ", ".join(name for name, ok in verdict.items() if ok))
    print("failed: " + ", ".join(name for name, ok in verdict.items() if not ok))
    print("\ncascading randomisation, mean Spearman after randomising down to each layer:")
    layers = audit.layers
    print("| explainer | " + " | ".join(layers) + " |\n|---|" + "---:|" * len(layers))
    for name, parts in curves.items():
        means = torch.cat(parts, dim=1).mean(dim=1).tolist()
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in means) + " |")


if __name__ == "__main__":
    main()
