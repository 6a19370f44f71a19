"""The zoo's first CAM call with no target layers against the search and a call with its layer given:
the same choice, the same maps, and how many forwards each ran.

    python benchmarks/zoo_first_call.py                          # everything (as zoo.py lists it)
    python benchmarks/zoo_first_call.py --only timm --out /tmp/first_call_timm.jsonl
    python benchmarks/zoo_first_call.py --models resnet18 timm:vit_tiny_patch16_224
    python benchmarks/zoo_first_call.py --merge /tmp/first_call_*.jsonl \
        --out benchmarks/zoo_first_call_results.jsonl   # several runs' rows, one summary
    python benchmarks/zoo_first_call.py --summary benchmarks/zoo_first_call_results.jsonl

The models, their builders and inputs are the zoo's (``zoo.py`` and the families it imports): one
image (a clip for video, the processor-style dict and ``ImageTextTarget(0)`` for image-text; the
detectors of :data:`DETECTORS`, which no zoo script lists, with their predictions as targets), random
seeded weights, all-zero heads given normal(0, 0.02) weights, S3D re-initialised, BatchNorm
calibration where the zoo's builders do it (no extra calibration of a faint map: the claim checked here
holds for any map). Per model:

(a) cache cleared, a first ``GradCAM(model)(x)``: its maps, ``cam.layer_choice`` and the model's
    forwards (a forward pre-hook on the model, removed in finally). The CAM is GradCAM with two
    methods that only observe (``_Observed``): whether the call lent its forward to the search
    (``lent``) and whether that forward gave the call its view (``view_kept``; else the call ran its
    own forward).
(b) cache cleared, ``find_target_layer(model, x)`` and ``GradCAM(model, choice.layers,
    reshape_transform=choice.reshape_transform)(x)``, the forwards of both together
    (``choice.layers`` is ``[choice.layer]``, a detector's default layers: those take the detection
    seam, not lent).

A model with several inputs (image-text) takes another path, not lent: its (b) is the call with (a)'s
layer and transform given (the search there runs on a wrapper, ``among`` the image's path), its
forwards the call's alone. One row per model (JSON lines, written as soon as it is ready): the
model, both choices' names, ``same_choice``, ``max_abs_diff`` of the maps, ``forwards_a``,
``forwards_b``, ``lent``/``view_kept``/``not_lent`` (why the call did not lend its forward), and
``error_a``/``error_b`` with ``same_error`` (a model the library refuses in (b) must be refused
alike in (a): same type and message). Progress on stderr, one line per model; Ctrl-C ends with one
line; the last line is the summary (``--summary`` prints it and every mismatch of result files).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo import hf_models, timm_models, torchvision_models, unzero_heads  # noqa: E402
from zoo_dense import dense_models  # noqa: E402
from zoo_image_text import image_text_inputs, image_text_models  # noqa: E402
from zoo_more import hf_more_models  # noqa: E402
from zoo_video import FRAMES, reinitialise, video_models  # noqa: E402

from pytorch_grad_cam import GradCAM, layer_search  # noqa: E402
from pytorch_grad_cam.layer_search import find_target_layer  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ImageTextTarget  # noqa: E402

FAMILIES = ("torchvision", "timm", "hf", "segmentation", "video", "image-text", "detection")
#: detectors (no zoo script lists them): torchvision's five at 64x64 with 5 classes, as
#: tests/detection/test_detection_layers.py builds them, and ultralytics YOLOv8n from its YAML
DETECTORS = ("fasterrcnn", "maskrcnn", "retinanet", "fcos", "ssdlite", "yolov8n")
#: maps equal within this
TOLERANCE = 1e-6


class _Observed(GradCAM):
    """GradCAM that records whether a call lent its forward to the search and kept its view; it
    computes nothing else (the overridden methods call GradCAM's)."""

    observed_lent = False
    observed_view = False

    def _lendable_forward(self, input_tensor, targets, aug_smooth):  # noqa: ANN001, ANN202
        lent = super()._lendable_forward(input_tensor, targets, aug_smooth)
        self.observed_lent = lent is not None
        return lent

    def choose_target_layers(self, input_tensor, targets):  # noqa: ANN001, ANN202
        super().choose_target_layers(input_tensor, targets)
        self.observed_view = self._first_view is not None


@contextmanager
def counted_forwards(model: nn.Module) -> Iterator[list[int]]:
    """``[n]``: how many times the model's own forward ran inside the block."""
    count = [0]

    def hook(module: nn.Module, args: Any) -> None:
        count[0] += 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def zoo_models(kinds: set[str], max_params: float) -> tuple[list[tuple[str, Callable, int]], list[str]]:
    """The zoo's (name, build, size) of the families asked for, and the torchvision names skipped."""
    models, skipped = [], []
    if "torchvision" in kinds:
        models, skipped = torchvision_models(max_params)
    if "timm" in kinds:
        models += timm_models()
    if "hf" in kinds:
        models += list(hf_models()) + list(hf_more_models())
    if "segmentation" in kinds:
        models += list(dense_models())
    if "video" in kinds:
        models += list(video_models())
    if "image-text" in kinds:
        models += list(image_text_models())
    if "detection" in kinds:
        models += [(f"det:{name}", lambda name=name: detector(name), 64) for name in DETECTORS]
    return models, skipped


def detector(name: str) -> nn.Module:
    """A detector of :data:`DETECTORS` with random seeded weights (YOLOv8n: its network)."""
    torch.manual_seed(0)
    if name == "yolov8n":
        import ultralytics

        return ultralytics.YOLO("yolov8n.yaml", verbose=False).model
    from torchvision.models import detection, resnet18
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    small = {"min_size": 64, "max_size": 64}
    if name == "fasterrcnn":
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=5, box_detections_per_img=10, **small
        )
    if name == "ssdlite":
        return detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=5, detections_per_img=10
        )
    if name == "maskrcnn":
        return detection.MaskRCNN(_resnet_fpn_extractor(resnet18(), 5), 5, box_detections_per_img=5, **small)
    levels = _resnet_fpn_extractor(
        resnet18(), 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )
    kind = detection.RetinaNet if name == "retinanet" else detection.FCOS
    return kind(levels, 5, score_thresh=0.0, detections_per_img=10, **small)


def model_and_input(name: str, build: Callable[[], nn.Module], size: int) -> tuple[nn.Module, Any, Any]:
    """The model (eval mode, prepared as the zoo prepares it), its input and its targets."""
    model = build().eval()
    generator = torch.Generator().manual_seed(0)
    if name.startswith("it:"):  # as zoo_image_text.run_image_text
        return model, image_text_inputs(name, size), [ImageTextTarget(0)]
    if name.startswith(("vid:", "hfvid:")):  # as zoo_video.run_video (hfvid: frames first)
        if name == "vid:s3d":
            reinitialise(model)
        clip = torch.rand(1, 3, FRAMES[name], size, size, generator=generator)
        return model, clip.transpose(1, 2).contiguous() if name.startswith("hfvid:") else clip, None
    if name.startswith("det:"):  # as tests/detection/test_detection_layers.py
        return model, torch.rand(1, 3, size, size, generator=generator), None
    unzero_heads(model)  # as zoo.measure
    return model, torch.randn(1, 3, size, size, generator=generator), None


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:800]


def _image_maps(maps: Any) -> np.ndarray:
    return maps["pixel_values"] if isinstance(maps, dict) else maps


def first_call_row(name: str, build: Callable[[], nn.Module], size: int) -> dict:
    """One row (see the module docstring)."""
    row: dict = {"model": name, "size": size}
    start = time.perf_counter()
    model, x, targets = model_and_input(name, build, size)
    several = isinstance(x, dict)
    maps_a = maps_b = None
    choice_a = choice_b = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer_search.clear_cache()
        cam = _Observed(model)
        try:
            with counted_forwards(model) as count:
                try:
                    maps_a = _image_maps(cam(x, targets=targets))
                    choice_a = cam.layer_choice
                finally:
                    row["forwards_a"] = count[0]
        except Exception as error:  # a refusal is a result: compared with (b)'s
            row["error_a"] = _error(error)
        row["lent"], row["view_kept"] = cam.observed_lent, cam.observed_view
        if several:
            row["not_lent"] = "several inputs (image-text): the call's own path"
        elif not cam.observed_lent:
            seam = type(cam.seam).__name__
            row["not_lent"] = f"seam: {seam}" if seam != "PlainSeam" else "not lent (plain seam)"
        layer_search.clear_cache()
        try:
            with counted_forwards(model) as count:
                try:
                    if several:
                        if choice_a is None:
                            raise RuntimeError("no choice of (a) to give")
                        choice_b, row["choice_b_from_a"] = choice_a, True
                    else:
                        choice_b = find_target_layer(model, x, targets)
                    layers = choice_b.layers  # [choice.layer], a detector's default layers
                    given = GradCAM(model, layers, reshape_transform=choice_b.reshape_transform)
                    maps_b = _image_maps(given(x, targets=targets))
                finally:
                    row["forwards_b"] = count[0]
        except Exception as error:
            row["error_b"] = _error(error)
    row["choice_a"] = None if choice_a is None else choice_a.name
    row["choice_b"] = None if choice_b is None else choice_b.name
    row["same_choice"] = choice_a is not None and choice_b is not None and choice_a.layers == choice_b.layers
    if maps_a is not None and maps_b is not None:
        row["max_abs_diff"] = (
            float(np.abs(maps_a - maps_b).max()) if maps_a.shape == maps_b.shape else "shapes differ"
        )
    if "error_a" in row or "error_b" in row:
        row["same_error"] = row.get("error_a") == row.get("error_b")
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def mismatch(row: dict) -> str | None:
    """Why a row breaks the claim, in words; None when it holds."""
    if "error_a" in row or "error_b" in row:
        if row.get("same_error"):
            return None
        return f"errors differ: (a) {row.get('error_a')} / (b) {row.get('error_b')}"
    if not row.get("same_choice"):
        return f"choices differ: (a) {row.get('choice_a')} / (b) {row.get('choice_b')}"
    diff = row.get("max_abs_diff")
    if not isinstance(diff, float) or diff > TOLERANCE:
        return f"maps differ: max abs difference {diff}"
    return None


def summary(rows: list[dict]) -> str:
    """The summary line over result rows (several runs' files merged)."""
    results = [r for r in rows if "model" in r and "skipped" not in r]
    chose = [r for r in results if r.get("choice_a") and r.get("choice_b")]
    refused = [r for r in results if "error_a" in r or "error_b" in r]
    equal = [r for r in chose if isinstance(r.get("max_abs_diff"), float) and r["max_abs_diff"] <= TOLERANCE]
    kept = [r for r in results if r.get("view_kept")]
    lent = [r for r in results if r.get("lent")]
    median = {
        k: statistics.median(r[k] for r in results if k in r) if results else None
        for k in ("forwards_a", "forwards_b")
    }
    kept_fwd = {
        k: statistics.median(r[k] for r in kept) if kept else None for k in ("forwards_a", "forwards_b")
    }
    bad = [r for r in results if mismatch(r)]
    return (
        f"zoo_first_call: {len(results)} models; {sum(r['same_choice'] for r in chose)} of {len(chose)} "
        f"with a choice chose the same layer, {len(equal)} gave maps equal within {TOLERANCE:g}; "
        f"{sum(bool(r.get('same_error')) for r in refused)} of {len(refused)} with an error failed alike; "
        f"{len(bad)} mismatches; lent {len(lent)}, view kept {len(kept)}; median forwards (a) "
        f"{median['forwards_a']} vs (b) {median['forwards_b']} (view kept: {kept_fwd['forwards_a']} vs "
        f"{kept_fwd['forwards_b']}); {sum('skipped' in r for r in rows)} skipped over the parameter cap"
    )


def report(rows: list[dict]) -> str:
    """The summary and one line per mismatch."""
    lines = [summary(rows)]
    for row in rows:
        if "model" in row and "skipped" not in row and mismatch(row):
            lines.append(f"  mismatch: {row['model']}: {mismatch(row)}")
    return "\n".join(lines)


def _read(paths: list[str]) -> list[dict]:
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line]
    return [r for r in rows if "summary" not in r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="zoo_first_call_results.jsonl", help="JSON lines, one row per model")
    parser.add_argument("--only", choices=FAMILIES, nargs="*")
    parser.add_argument("--models", nargs="*", help="names as in the rows (tv:resnet18, timm:..., hf:...)")
    parser.add_argument("--max-params", type=float, default=150e6)
    parser.add_argument(
        "--summary", nargs="+", metavar="JSONL", help="only print the summary of result files"
    )
    parser.add_argument(
        "--merge", nargs="+", metavar="JSONL", help="write these files' rows and a summary to --out"
    )
    args = parser.parse_args(argv)
    if args.summary:
        print(report(_read(args.summary)))
        return 0
    if args.merge:
        rows = _read(args.merge)
        with Path(args.out).open("w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row) + "\n")
            stream.write(json.dumps({"summary": summary(rows)}) + "\n")
        print(report(rows))
        return 0
    models, skipped = zoo_models(set(args.only or FAMILIES), args.max_params)
    if args.models:
        models = [m for m in models if m[0] in args.models or m[0].split(":", 1)[1] in args.models]
        skipped = []
    out = Path(args.out)
    rows: list[dict] = [{"model": f"tv:{s}", "skipped": "over --max-params"} for s in skipped]
    done = 0
    try:
        with out.open("w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row) + "\n")
            for index, (name, build, size) in enumerate(models, 1):
                try:
                    row = first_call_row(name, build, size)
                except Exception as error:  # building or preparing the model failed: a result too
                    row = {"model": name, "size": size, "error_a": _error(error), "error_b": _error(error)}
                    row["same_error"], row["build_failed"] = True, True
                rows.append(row)
                stream.write(json.dumps(row) + "\n")
                stream.flush()
                done = index
                why = mismatch(row)
                print(
                    f"[{index}/{len(models)}] {name}: {row.get('choice_a')} vs {row.get('choice_b')} "
                    f"diff {row.get('max_abs_diff', '-')} forwards {row.get('forwards_a')} vs "
                    f"{row.get('forwards_b')} lent={row.get('lent')} view={row.get('view_kept')} "
                    f"{row.get('seconds', '')}s{' MISMATCH: ' + why if why else ''}",
                    file=sys.stderr,
                    flush=True,
                )
            line = summary(rows)
            stream.write(json.dumps({"summary": line}) + "\n")
    except KeyboardInterrupt:
        print(
            f"zoo_first_call: interrupted after {done} of {len(models)} models; rows in {out}",
            file=sys.stderr,
        )
        return 130
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
