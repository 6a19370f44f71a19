"""Time each CAM method as a ratio to the model's own forward pass (the floor).

    python benchmarks/bench.py                         # the README table (resnet50 at 224, batch 1 and 8)
    python benchmarks/bench.py --methods gradcam eigencam --batches 1 --repeats 3

For every (model, input size, batch) and method, the method's call and the model's plain
``torch.no_grad()`` forward on the same input are timed alternately, ``--repeats`` times each after
one warm-up; the table gives both medians per image and their ratio. Weights are random (seeded):
timings do not depend on them.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam.registry import METHODS  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_medians(
    fn: Callable[[], object], floor: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median wall times of ``fn()`` and ``floor()``, timed alternately after one warm-up each.

    Alternating the two keeps their ratio honest when the machine's speed drifts.
    """
    fn()
    floor()
    fn_times, floor_times = [], []
    for _ in range(repeats):
        floor_times.append(timed(floor))
        fn_times.append(timed(fn))
    return statistics.median(fn_times), statistics.median(floor_times)


def build_model(name: str) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """A seeded torchvision model in eval mode and its usual last-stage target layer."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, [model.layer4[-1]]


def make_cam(name: str, model: torch.nn.Module, layers: list[torch.nn.Module], batch_size: int):
    cls = METHODS[name].cls
    if "batch_size" in inspect.signature(cls).parameters:
        return cls(model, layers, batch_size=batch_size)
    return cls(model, layers)


def bench_config(
    model_name: str, size: int, batch: int, methods: list[str], repeats: int, cam_batch_size: int
) -> list[dict]:
    model, layers = build_model(model_name)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    rows = []
    for name in methods:
        cam = make_cam(name, model, layers, cam_batch_size)
        seconds, floor = interleaved_medians(lambda cam=cam: cam(x), forward, repeats)
        rows.append(
            {
                "model": model_name,
                "size": size,
                "batch": batch,
                "method": name,
                "seconds": seconds,
                "forward": floor,
            }
        )
    for row in rows:
        row["ratio"] = row["seconds"] / row["forward"]
        row["per_image"] = row["seconds"] / batch
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| Model | Input | Batch | Method | forward ms / image | method ms / image | x forward |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        forward_ms = 1000 * row["forward"] / row["batch"]
        lines.append(
            f"| {row['model']} | {row['size']}x{row['size']} | {row['batch']} | {row['method']} "
            f"| {forward_ms:.1f} | {1000 * row['per_image']:.1f} | {row['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=None, help="registry names (default: gradient/eigen)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cam-batch-size", type=int, default=64, help="batch_size of methods that take one")
    args = parser.parse_args(argv)
    methods = args.methods or [
        "gradcam",
        "gradcam++",
        "xgradcam",
        "layercam",
        "eigencam",
        "eigengradcam",
    ]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    rows = []
    for batch in args.batches:
        rows += bench_config(args.model, args.size, batch, methods, args.repeats, args.cam_batch_size)
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
