"""The layer search's cost: a GradCAM call with no ``target_layers`` the first time (search + CAM)
and later (the choice cached), against the same call with the layer given and the model's own
``no_grad`` forward, on a CNN and a ViT.

    python benchmarks/bench.py --search-cost --threads 1
    python benchmarks/search_cost.py --threads 1 --repeats 5
    python benchmarks/search_cost.py --threads 1 --repeats 5 --batch 16 --memory

Per model (random weights, seeded; batch ``--batch``, default 1), timed alternately with the
forward of the same batch after one warm-up each, medians of ``--repeats``: the search alone
(``find_target_layer``, cache cleared; it decides on one image of the batch), the first call (cache
cleared, so search + CAM), a later call (cached) and the call with the chosen layer given, each as
a ratio to the forward; "added" is the first call minus the given-layer call, in forwards (the
search's share of the first call).

With ``--memory``, also the search's peak memory over the forward's, each model in a process
started with glibc's ``mmap`` threshold fixed (``bench.EXACT_MALLOC_ENV``; the peak is
``bench.peak_rss_delta``: the rise of the resident set's high-water mark over the call): the
forward after a warm-up, the search with its cache cleared after a warm-up search on another
image (which loads autograd's code once per process), and the GradCAM call with the chosen layer
given, medians of 3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pytorch_grad_cam import GradCAM, layer_search  # noqa: E402
from pytorch_grad_cam.layer_search import find_target_layer  # noqa: E402


def search_cost_models() -> list[tuple[str, Callable[[], nn.Module], int]]:
    """(label, builder, input size): resnet50 at 224 and a ViT at 224 (timm's vit_small if timm is
    installed, else torchvision's vit_b_16 with its zero-initialised head given random weights)."""
    import torchvision

    def vit() -> nn.Module:
        try:
            import timm
        except ImportError:
            model = torchvision.models.vit_b_16()
            nn.init.normal_(model.heads.head.weight, std=0.02)
            return model
        return timm.create_model("vit_small_patch16_224", pretrained=False)

    label = "timm vit_small_patch16_224"
    try:
        import timm  # noqa: F401
    except ImportError:
        label = "torchvision vit_b_16"
    return [("torchvision resnet50", torchvision.models.resnet50, 224), (label, vit, 224)]


#: ``--clock``: wall time, or this process's CPU time (steadier on a shared machine; with one torch
#: thread it is the time the computation took, whatever else ran)
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
_clock = time.perf_counter


def _timed(fn: Callable[[], object]) -> float:
    start = _clock()
    fn()
    return _clock() - start


def _setup(
    build: Callable[[], nn.Module], size: int, batch: int
) -> tuple[nn.Module, torch.Tensor, Callable[[], None], Callable[[], None]]:
    """The model (seeded, eval), its ``(batch, 3, size, size)`` input, its ``no_grad`` forward and
    the search with the cache cleared."""
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def search() -> None:
        layer_search.clear_cache()
        find_target_layer(model, x)

    return model, x, forward, search


def measure(build: Callable[[], nn.Module], size: int, repeats: int, batch: int = 1) -> dict[str, float]:
    """The four ratios to the forward (see the module docstring), and the forward in seconds."""
    model, x, forward, search = _setup(build, size, batch)

    def first() -> None:
        layer_search.clear_cache()
        GradCAM(model)(x)

    later_cam = GradCAM(model)
    later_cam(x)
    choice = find_target_layer(model, x)
    given_cam = GradCAM(model, [choice.layer], reshape_transform=choice.reshape_transform)
    runs = {"search": search, "first": first, "later": lambda: later_cam(x), "given": lambda: given_cam(x)}
    for fn in (forward, *runs.values()):
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in ("forward", *runs)}
    for _ in range(repeats):
        for name, fn in runs.items():
            times["forward"].append(_timed(forward))
            times[name].append(_timed(fn))
    floor = statistics.median(times["forward"])
    ratios = {name: statistics.median(t) / floor for name, t in times.items() if name != "forward"}
    ratios["added"] = ratios["first"] - ratios["given"]
    ratios["forward_s"] = floor
    ratios["layer"] = choice.name
    return ratios


def search_memory(index: int, batch: int) -> dict[str, float]:
    """The forward's and the search's peak in bytes (run in a process with ``EXACT_MALLOC_ENV``)."""
    from bench import peak_rss_delta

    _, build, size = search_cost_models()[index]
    model, x, forward, search = _setup(build, size, batch)
    forward()
    choice = find_target_layer(model, torch.randn(1, 3, size, size))  # the first backward loads code
    given_cam = GradCAM(model, [choice.layer], reshape_transform=choice.reshape_transform)
    given_cam(x)
    return {
        "forward": statistics.median(peak_rss_delta(forward) for _ in range(3)),
        "search": statistics.median(peak_rss_delta(search) for _ in range(3)),
        "given": statistics.median(peak_rss_delta(lambda: given_cam(x)) for _ in range(3)),
    }


def _memory_in_child(index: int, batch: int) -> dict[str, float]:
    from bench import EXACT_MALLOC_ENV

    command = [sys.executable, __file__, "--memory-child", str(index), "--batch", str(batch)]
    command += ["--threads", str(torch.get_num_threads())]
    done = subprocess.run(
        command, env={**os.environ, **EXACT_MALLOC_ENV}, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def search_cost_markdown(rows: list[tuple[str, dict]]) -> str:
    memory = all("search_memory" in r for _, r in rows)
    lines = [
        "| model | chosen layer | search alone | first call (search + GradCAM) | later call (cached) | "
        "layer given | added by the search |"
        + (" peak memory: search (forward's) | layer given |" if memory else ""),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if memory else ""),
    ]
    for label, r in rows:
        extra = ""
        if memory:
            extra = f" {r['search_memory']:.2f} ({r['forward_mb']:.1f} MB) | {r['given_memory']:.2f} |"
        lines.append(
            f"| {label} | `{r['layer']}` | {r['search']:.2f} | {r['first']:.2f} | {r['later']:.2f} | "
            f"{r['given']:.2f} | {r['added']:.2f} |" + extra
        )
    return "\n".join(lines)


def bench_search_cost(repeats: int, batch: int = 1, memory: bool = False) -> str:
    rows = []
    for index, (label, build, size) in enumerate(search_cost_models()):
        row = measure(build, size, repeats, batch)
        if memory:
            peaks = _memory_in_child(index, batch)
            row["search_memory"] = peaks["search"] / peaks["forward"]
            row["given_memory"] = peaks["given"] / peaks["forward"]
            row["forward_mb"] = peaks["forward"] / 2**20
        rows.append((f"{label} {size}", row))
    return search_cost_markdown(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1, help="images per call (the search uses one)")
    parser.add_argument("--memory", action="store_true", help="also the search's peak memory (Linux)")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--clock", choices=tuple(CLOCKS), default="wall", help="what is timed (default: wall)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCKS[args.clock]
    if args.memory_child is not None:
        print(json.dumps(search_memory(args.memory_child, args.batch)))
        return 0
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, "
        f"{args.clock} time, ratios to the model's forward of that batch"
    )
    print(bench_search_cost(args.repeats, args.batch, args.memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
