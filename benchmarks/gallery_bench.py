"""Time the README's gallery command, ``cam.py --image-path examples/chelsea.png --method all``.

Run from the repository root: ``python benchmarks/gallery_bench.py``. It runs the command in this
process (into a temporary folder), then prints each method's time and the total, as seconds and as a
ratio to the default model's own ``torch.no_grad()`` forward at batch 1 (timed here before and after
the command, the median of 7 each). What it assumes: the CPU (the budget of ``--method all`` on a
CPU: SS-CAM and IS-CAM with 2 samples), the default model efficientnet-lite0 at 224 x 224, its layer
``_blocks.-1`` (320 channels), the torch threads this process has (``torch.get_num_threads()``).
"""

from __future__ import annotations

import contextlib
import io
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytorch_grad_cam.cli import photo as cli  # noqa: E402
from pytorch_grad_cam.cli.models import DEFAULT_MODEL, load_model  # noqa: E402


def forward_seconds(repeats: int = 7) -> float:
    """Median time of the default model's no_grad forward on one 224 x 224 image."""
    model = load_model(DEFAULT_MODEL).model
    x = torch.randn(1, 3, 224, 224)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    before = forward_seconds()
    report = io.StringIO()
    with tempfile.TemporaryDirectory() as folder:
        argv = ["--image-path", str(ROOT / "examples" / "chelsea.png"), "--method", "all"]
        start = time.perf_counter()
        with contextlib.redirect_stdout(report):
            code = cli.main([*argv, "--output-dir", folder])
        total = time.perf_counter() - start
    after = forward_seconds()
    forward = (before + after) / 2
    times = {name: float(s) for name, s in re.findall(r"^(\S+): (\d+\.\d) s", report.getvalue(), re.M)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; exit status {code}")
    print(
        f"forward of {DEFAULT_MODEL} at 224: {forward * 1000:.0f} ms",
        f"(before {before * 1000:.0f}, after {after * 1000:.0f})",
    )
    print(f"{'method':<20} {'s':>7} {'x forward':>10}")
    for name, seconds in sorted(times.items(), key=lambda item: -item[1]):
        print(f"{name:<20} {seconds:7.1f} {seconds / forward:10.0f}")
    print(f"{'whole command':<20} {total:7.1f} {total / forward:10.0f}  (with loading, guided backprop)")
    for line in report.getvalue().splitlines():
        if line.startswith(("skipped", "methods took")):
            print(line)


if __name__ == "__main__":
    main()
