"""Peak memory of one CAM call as x the model's own ``no_grad`` forward, each case in a fresh process.

    python benchmarks/memory.py                                   # every method, batches 1 and 16
    python benchmarks/memory.py --methods gradcam --batches 64    # a selection
    PYTHONPATH=/work/main python benchmarks/memory.py --out before.jsonl   # another checkout's code
    python benchmarks/memory.py --table --write-docs              # docs/memory.md's table from the jsonl

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
process (after one warm-up, the smaller of two). Then a warm-up call of the same method on another
image (batch 1, its own CAM object; ScoreCAM's on ``conv1``, with one layer search in the automatic
cases), and the layer search's cache is cleared: the warm-up loads the
library code a method runs for the first time in a process (LAPACK's SVD, autograd's backward:
5-15 MB of file-backed pages, once per process, which the resident set counts; a GPU's allocator
does not). Then one call: the first of its CAM object (``auto-later``: the second), as a user's
first call would run (a search run by a blank map's diagnosis is cached, so a second call would
hide it; the cleared cache makes the measured call search again). The code the measured call still
loads is reported (``code_mb``, the growth of ``RssFile``); it is counted in the peak. With CUDA,
``torch.cuda.max_memory_allocated`` over the call is used instead. Results go to ``--out`` (jsonl),
one line per case as it finishes; a table is printed at the end (``--table`` prints it from the
jsonl, the latest row per case, with ``--before``'s rows as the "before" column).
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


def _file_pages() -> int:
    """Bytes of the resident set backed by files (``RssFile``: mostly the libraries' code)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssFile:"))


def _peak(fn: Callable[[], object], device: Any) -> tuple[float, float]:
    """Bytes: the most the call held above what was held just before it, and the code it loaded
    (on CPU the growth of the file-backed resident set, ``RssFile``, over the call; counted in the
    peak, reported apart: after the warm-up it should be about 0)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - before), 0.0
    from bench import peak_rss_delta

    files = _file_pages()
    peak = peak_rss_delta(fn)
    return peak, float(max(0, _file_pages() - files))


def _clear_layer_cache() -> None:
    try:
        from pytorch_grad_cam.layer_search import clear_cache
    except ImportError:  # the private modules' later home
        from pytorch_grad_cam._core.layer_search import clear_cache
    clear_cache()


def _warm_layer_search(model: Any, x: Any, targets: list[Any]) -> None:
    """One layer search on the warm-up image (it loads autograd's code), then its cache cleared."""
    try:
        from pytorch_grad_cam.layer_search import find_target_layer
    except ImportError:  # the public re-export, in versions without the package
        from pytorch_grad_cam.utils.find_layers import find_target_layer
    find_target_layer(model, x, targets)
    _clear_layer_cache()


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
    forward_peak = min(_peak(forward, device)[0] for _ in range(2))
    with torch.no_grad():
        top = model(x).argmax(dim=1).tolist()
    cls = {"gradcam": GradCAM, "eigencam": EigenCAM, "scorecam": ScoreCAM, "ablationcam": AblationCAM}
    build = LeGrad if method == "legrad" else cls[method]
    classes = top if case == "given-top" else [1] * batch
    targets = [ClassifierOutputTarget(k) for k in classes]
    kwargs = {"progress": False} if method == "scorecam" else {}
    # The warm-up: the same method on another image (batch 1, its own CAM object; ScoreCAM on the
    # 64 channels of conv1, quicker, and in the automatic cases one layer search, whose backward
    # the conv1 call does not run), then the layer search's cache cleared, so the measured call
    # is still a first call. It loads the library code the method runs for the first time in a
    # process (LAPACK's SVD, autograd's backward: 5-15 MB of file-backed pages, once per process).
    warm_x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    if method == "scorecam":
        build(model, [model.conv1], **kwargs)(warm_x, targets[:1])
        if not case.startswith("given"):  # the search's backward, without a ScoreCAM call on its layer
            _warm_layer_search(model, warm_x, targets[:1])
    warm = build(model, layers, **kwargs) if case.startswith("given") else build(model, **kwargs)
    if method != "scorecam":
        warm(warm_x, targets[:1])
    del warm
    _clear_layer_cache()
    cam = build(model, layers, **kwargs) if case.startswith("given") else build(model, **kwargs)
    if case == "auto-later":
        cam(x, targets)
    start = time.perf_counter()
    peak, code = _peak(lambda: cam(x, targets), device)
    seconds = time.perf_counter() - start
    blank = len({f.image for f in getattr(cam, "diagnostics", []) if f.in_result})
    return {
        "method": method,
        "batch": batch,
        "case": case,
        "input": size,
        "device": device.type,
        "peak_mb": peak / 2**20,
        "code_mb": code / 2**20,
        "forward_mb": forward_peak / 2**20,
        "x_forward": peak / forward_peak,
        "blank_images": blank,
        "seconds": seconds,
        "per_pass": getattr(cam, "batch_size", None) or batch,
    }


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each (batch, method, case), in table order."""
    found = {(r["batch"], r["method"], r["case"]): r for r in rows}
    order = {m: i for i, m in enumerate(METHODS)}, {c: i for i, c in enumerate(CASES)}
    return sorted(found.values(), key=lambda r: (r["batch"], order[0][r["method"]], order[1][r["case"]]))


def table(rows: list[dict[str, Any]], before: list[dict[str, Any]] = ()) -> str:
    """The markdown table of docs/memory.md: the latest row per case, and its "before" if any.

    A row without ``code_mb`` was measured before the code pages were set apart (its peak includes
    them): marked with ``*``.
    """
    earlier = {(r["batch"], r["method"], r["case"]): r for r in before}
    lines = [
        "| batch | method | case | input | per pass | peak MB (forward's) | x forward | before: x forward "
        "| code loaded MB | blank maps |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in latest(rows):
        old = earlier.get((r["batch"], r["method"], r["case"]))
        was = "-" if old is None else f"{old['x_forward']:.2f} ({old['peak_mb']:.0f} MB, {old['code']})"
        code = f"{r['code_mb']:.0f}" if "code_mb" in r else "*"
        per_pass = r.get("per_pass", "-") if r["method"] in ("scorecam", "ablationcam") else "-"
        lines.append(
            f"| {r['batch']} | {r['method']} | {r['case']} | {r['input']} | {per_pass} | {r['peak_mb']:.0f} "
            f"({r['forward_mb']:.0f}) | {r['x_forward']:.2f} | {was} | {code} | {r['blank_images']} |"
        )
    return "\n".join(lines)


def read_rows(path: str) -> list[dict[str, Any]]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


#: docs/memory.md's table sits between these lines (``--table --write-docs`` rewrites it).
DOCS = HERE.parent / "docs" / "memory.md"
TABLE_START, TABLE_END = "<!-- memory table: benchmarks/memory.py --table --write-docs -->", "<!-- end -->"


def write_docs(text: str) -> None:
    page = DOCS.read_text()
    head, rest = page.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    DOCS.write_text(f"{head}{TABLE_START}\n{text}\n{TABLE_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--scorecam-size", type=int, default=64, help="ScoreCAM's input size (default 64)")
    parser.add_argument("--out", default=str(HERE / "memory_results.jsonl"))
    parser.add_argument(
        "--before", default=str(HERE / "memory_before.jsonl"), help="the table's before column"
    )
    parser.add_argument("--table", action="store_true", help="only print the table of --out (and --before)")
    parser.add_argument(
        "--write-docs", action="store_true", help="with --table: rewrite docs/memory.md's table"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        before = read_rows(args.before) if os.path.exists(args.before) else []
        text = table(read_rows(args.out), before)
        print(text)
        if args.write_docs:
            write_docs(text)
        return
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
