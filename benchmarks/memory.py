"""Peak memory of one CAM call as x the model's own ``no_grad`` forward, each case in a fresh process.

    python benchmarks/memory.py                                   # every method, batches 1 and 16
    python benchmarks/memory.py --methods gradcam --batches 64    # a selection
    PYTHONPATH=/work/main python benchmarks/memory.py --out before.jsonl   # another checkout's code

Cases, per method and batch (random weights, seeded; resnet50 at 224x224 with ``layer4[-1]`` for
GradCAM, EigenCAM and AblationCAM, at ``--scorecam-size`` for ScoreCAM, whose masked forwards grow
with the channels; torchvision's vit_b_16 at 224x224 with every block for LeGrad):

- ``given-class1``: target layers given, ``ClassifierOutputTarget(1)`` for every image (as issue 18
  measured it; with these weights some images' maps are blank for class 1);
- ``given-top``: target layers given, each image's top class (no map blank here);
- ``auto-first``: no target layers, class 1: the first call (the layer search runs; for LeGrad the
  default blocks);
- ``auto-later``: the same CAM's second call (the choice cached), measured after one unmeasured call.

Each case runs in its own process started with glibc's ``mmap`` threshold fixed
(``bench.EXACT_MALLOC_ENV``: every tensor from 64 KiB up is mapped when allocated and unmapped when
freed), and measures the rise of the resident set's high-water mark over one call above the resident
set just before it (``bench.peak_rss_delta``); the forward is measured the same way in the same
process (after one warm-up, the smaller of two), then one call: the first of its CAM object
(``auto-later``: the second), as a user's first call would run (a search run by a blank map's
diagnosis is cached, so a second call would hide it). With CUDA, ``torch.cuda.max_memory_allocated``
over the call is used instead. Results go to ``--out`` (jsonl), one line per case as it finishes;
a table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
METHODS = ("gradcam", "eigencam", "scorecam", "ablationcam", "legrad")
CASES = ("given-class1", "given-top", "auto-first", "auto-later")


def _peak(fn: Callable[[], object], device: Any) -> float:
    """Bytes: the most the call held above what was held just before it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before)
    from bench import peak_rss_delta

    return peak_rss_delta(fn)


def child(method: str, batch: int, case: str, scorecam_size: int) -> dict[str, Any]:
    """One case in this (fresh) process: see the module docstring."""
    import torch
    import torchvision

    from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM, LeGrad, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    warnings.simplefilter("ignore")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if method == "legrad":
        from bench import vit_model

        model, size = vit_model(), 224
        layers = list(model.encoder.layers)
    else:
        model = torchvision.models.resnet50().eval()
        size = scorecam_size if method == "scorecam" else 224
        layers = [model.layer4[-1]]
    model.to(device)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    forward()
    forward_peak = min(_peak(forward, device) for _ in range(2))
    with torch.no_grad():
        top = model(x).argmax(dim=1).tolist()
    cls = {"gradcam": GradCAM, "eigencam": EigenCAM, "scorecam": ScoreCAM, "ablationcam": AblationCAM}
    build = LeGrad if method == "legrad" else cls[method]
    classes = top if case == "given-top" else [1] * batch
    targets = [ClassifierOutputTarget(k) for k in classes]
    kwargs = {"progress": False} if method == "scorecam" else {}
    cam = build(model, layers, **kwargs) if case.startswith("given") else build(model, **kwargs)
    if case == "auto-later":
        cam(x, targets)
    start = time.perf_counter()
    peaks = [_peak(lambda: cam(x, targets), device)]
    seconds = time.perf_counter() - start
    blank = len({f.image for f in getattr(cam, "diagnostics", []) if f.in_result})
    return {
        "method": method,
        "batch": batch,
        "case": case,
        "input": size,
        "device": device.type,
        "peak_mb": min(peaks) / 2**20,
        "forward_mb": forward_peak / 2**20,
        "x_forward": min(peaks) / forward_peak,
        "blank_images": blank,
        "seconds": seconds,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | batch | case | input | peak MB (forward's) | x forward | blank maps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['batch']} | {r['case']} | {r['input']} | {r['peak_mb']:.0f} "
            f"({r['forward_mb']:.0f}) | {r['x_forward']:.2f} | {r['blank_images']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--scorecam-size", type=int, default=64, help="ScoreCAM's input size (default 64)")
    parser.add_argument("--out", default=str(HERE / "memory_results.jsonl"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.child:
        method, batch, case = args.child
        print(json.dumps(child(method, int(batch), case, args.scorecam_size)))
        return
    from bench import EXACT_MALLOC_ENV

    jobs = [(m, b, c) for b in args.batches for m in args.methods for c in args.cases]
    env = {**os.environ, **EXACT_MALLOC_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(HERE.parent)) if p)
    rows = []
    err = sys.stderr
    try:
        for number, (method, batch, case) in enumerate(jobs, 1):
            print(f"[{number}/{len(jobs)}] {method} batch {batch} {case} ...", end=" ", flush=True, file=err)
            command = [sys.executable, __file__, "--child", method, str(batch), case]
            command += ["--scorecam-size", str(args.scorecam_size)]
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append(row)
            with open(args.out, "a") as out:
                out.write(json.dumps(row) + "\n")
            mb = f"{row['peak_mb']:.0f} / {row['forward_mb']:.0f} MB"
            print(f"{row['x_forward']:.2f}x forward ({mb}, {row['seconds']:.1f} s)", file=err, flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(rows)} of {len(jobs)} cases measured, in {args.out}", file=sys.stderr)
        sys.exit(130)
    print(table(rows))


if __name__ == "__main__":
    main()
