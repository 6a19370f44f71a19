"""Tutorial: score CAMs with the faithfulness metrics, and use the scores to choose a method.

    python docs/tutorials/metrics.py            # about a minute on a CPU
    python docs/tutorials/metrics.py --quick    # seconds, fewer images and steps (the tests)

The small CNN of ``shapes.py`` is trained in seconds on generated shapes, so the region that
should matter (the class shape's cell) is known. Each method explains the true class of 64 test
pictures; three scores are compared: the share of the map inside the class shape's cell (needs
the ground truth, which real data rarely has), ROAD combined and deletion/insertion (need only
the model). Writes ``metrics_methods.png`` (four pictures and each method's map) and
``metrics_table.md`` (the table shown on the tutorial's page).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402
from pictures import arguments, energy_in_box, grid, record, tile, to_rgb  # noqa: E402

from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, RandomCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.metrics.deletion_insertion import DeletionInsertion  # noqa: E402
from pytorch_grad_cam.metrics.road import ROADCombined  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget  # noqa: E402

METHODS = {
    "GradCAM": GradCAM, "GradCAM++": GradCAMPlusPlus, "LayerCAM": LayerCAM, "EigenCAM": EigenCAM,
    "ScoreCAM": ScoreCAM, "AblationCAM": AblationCAM, "RandomCAM (baseline)": RandomCAM,
}  # fmt: skip


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    model = shapes.trained_classifier(40 if args.quick else 400)
    count = 8 if args.quick else 64
    images, labels, boxes, _ = shapes.batch(count, torch.Generator().manual_seed(21))
    targets = [ClassifierOutputTarget(int(k)) for k in labels]
    probability = [ClassifierOutputSoftmaxTarget(int(k)) for k in labels]  # the metrics read probabilities
    layer = [model.features[-1]]

    rows, maps = [], {}
    for name, method in METHODS.items():
        options = {"seed": 0} if method is RandomCAM else {}
        start = time.perf_counter()
        with method(model, layer, **options) as cam:
            maps[name] = cam(images, targets)
        seconds = (time.perf_counter() - start) / count
        in_box = np.mean([energy_in_box(m, b) for m, b in zip(maps[name], boxes.tolist())])
        torch.manual_seed(0)  # ROAD's imputation noise
        road = ROADCombined(percentiles=[20, 40, 60, 80])(images, maps[name], probability, model).mean()
        curves = DeletionInsertion(steps=16 if args.quick else 32).curves(
            images, maps[name], probability, model
        )
        rows.append((name, in_box, road, curves.insertion_auc.mean(), curves.deletion_auc.mean(), seconds))
        print(
            f"{name:21s} in the cell {in_box:.3f}  ROAD {road:.4f}  insertion {rows[-1][3]:.3f}  "
            f"deletion {rows[-1][4]:.3f}"
        )

    lines = [
        "| Method | Map in the class shape's cell ↑ | ROAD combined ↑ | Insertion AUC ↑ | Deletion AUC ↓ "
        "| ms / image |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {n} | {b:.3f} | {r:.4f} | {i:.3f} | {d:.3f} | {1000 * s:.1f} |" for n, b, r, i, d, s in rows
    ]
    table = args.out / "metrics_table.md"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")

    pictures = []
    for i in range(4):
        rgb = to_rgb(images[i])
        box = boxes[i].tolist()
        pictures.append(
            [tile(rgb, box=box)]
            + [tile(show_cam_on_image(rgb, maps[name][i], use_rgb=True), box=box) for name in METHODS]
        )
    written = grid(
        pictures, ["image", *(name.split(" ")[0] for name in METHODS)], args.out / "metrics_methods.png"
    )
    record([written, table], "metrics", args.quick)


if __name__ == "__main__":
    main()
