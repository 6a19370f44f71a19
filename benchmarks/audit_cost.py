"""What each audit metric costs: forward passes counted, seconds as a ratio to the model's forward pass.

    python benchmarks/audit_cost.py [--size 160] [--batch 8] [--images 16]

Model: torchvision resnet18 (seeded random weights; cost does not depend on training), GradCAM on
``layer4``, a batch of ``--batch`` seeded images of ``--size`` px, one thread. Part 1 times each metric
on one batch (median of 5) and counts the model's forward calls (a pre-hook on the model, which
``copy.deepcopy`` carries into the randomised copies). Part 2 runs the dataset command on a folder of
``--images`` PNGs: maps alone (``run``, twice: the faster counts), then ``run(..., evaluate=...)``
with each metric group alone, and reports each one's wall time over the maps-alone run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam.batch import run  # noqa: E402
from pytorch_grad_cam.metrics.audit import localisation_scores  # noqa: E402
from pytorch_grad_cam.metrics.baselines import centre_gaussian, edge_maps, random_maps  # noqa: E402
from pytorch_grad_cam.metrics.explainers import cam_explainer  # noqa: E402
from pytorch_grad_cam.metrics.random_logit import random_logit  # noqa: E402
from pytorch_grad_cam.metrics.randomisation import model_parameter_randomisation, parameter_layers  # noqa: E402


def timed(call, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        call()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    calls = [0]
    model.register_forward_pre_hook(lambda module, inputs: calls.__setitem__(0, calls[0] + 1))
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    explain = cam_explainer(model, "gradcam", model.layer4)
    classes = list(range(args.batch))
    maps = explain(model, x, classes)
    masks = torch.zeros(args.batch, args.size, args.size, dtype=torch.bool)
    masks[:, args.size // 4 : args.size // 2, args.size // 4 : args.size // 2] = True
    layers = len(parameter_layers(model))

    def forward():
        with torch.no_grad():
            model(x)

    rows = []

    def measure(name, call, note=""):
        calls[0] = 0
        call()
        count = calls[0]
        rows.append((name, count, timed(call), note))

    measure("forward pass (no grad)", forward)
    measure("GradCAM map", lambda: explain(model, x, classes), "1 forward + 1 backward")
    measure("5 localisation metrics", lambda: localisation_scores(maps, masks, masks), "on the maps")
    measure(
        "random logit", lambda: random_logit(model, x, explain, num_classes=1000, classes=classes, maps=maps)
    )
    for steps in (1, 5):
        measure(
            f"randomisation, {steps} step(s)",
            lambda steps=steps: model_parameter_randomisation(
                model, x, explain, classes=classes, steps=steps, maps=maps
            ),
            f"of {layers} layers; deepcopy included",
        )
    measure(
        "baselines: random + centre",
        lambda: (random_maps(args.batch, (args.size,) * 2), centre_gaussian(args.batch, (args.size,) * 2)),
    )
    measure("baseline: edge map", lambda: edge_maps(x))
    base = rows[0][2]
    print(f"resnet18, batch {args.batch} at {args.size} px, 1 thread; forward pass {base * 1000:.0f} ms\n")
    print("| step | forward calls | time / forward pass | note |\n|---|---:|---:|---|")
    for name, count, seconds, note in rows:
        print(f"| {name} | {count} | {seconds / base:.2f} | {note} |")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        rng = np.random.default_rng(0)
        lines = ["image,x1,y1,x2,y2"]
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3)).astype(np.uint8)).save(
                folder / f"{i:03d}.png"
            )
            lines.append(f"{i:03d}.png,10,10,{args.size // 2},{args.size // 2}")
        (Path(tmp) / "boxes.csv").write_text("\n".join(lines) + "\n")
        common = dict(batch_size=args.batch, num_workers=0, image_size=args.size, progress=False)
        runs = [
            ("maps alone (run)", None),
            ("maps alone (run), again", None),
            (
                "localisation (5 metrics)",
                {"annotations": str(Path(tmp) / "boxes.csv"), "sanity": [], "baselines": False},
            ),
            ("random logit", {"sanity": ["random_logit"], "baselines": False}),
            ("randomisation, 5 steps", {"sanity": ["randomisation"], "baselines": False, "steps": 5}),
            ("+ the 3 baselines, all metrics", {"annotations": str(Path(tmp) / "boxes.csv"), "steps": 5}),
        ]
        results = []
        for index, (name, options) in enumerate(runs):
            out = Path(tmp) / f"out{index}"
            tick = time.perf_counter()
            if options is None:
                run(model, model.layer4, folder, "gradcam", output_dir=out, **common)
            else:
                run(
                    model,
                    model.layer4,
                    folder,
                    "gradcam",
                    output_dir=out,
                    evaluate={**options, "worst": 0, "html": False},
                    **common,
                )
            results.append((name, time.perf_counter() - tick))
    alone = min(results[0][1], results[1][1])  # the machine is shared: the quieter of two
    print(f"\nthe dataset command on {args.images} images: maps alone {alone:.1f} s\n")
    print("| evaluate with | seconds | over maps alone |\n|---|---:|---:|")
    for name, seconds in results:
        print(f"| {name} | {seconds:.1f} | {seconds / alone:.2f}x |")


if __name__ == "__main__":
    main()
