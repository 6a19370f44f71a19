"""Images/s of the batch runner: GradCAM on the real efficientnet-lite0 at 224x224, on this CPU.

    python benchmarks/batch_bench.py        # the README table: 256 photos, batch 1 and 32, 1 and 2 processes
    python benchmarks/batch_bench.py --images 32 --batches 1 8 --processes 1 2     # a quick try

A folder of ``--images`` JPEG photos (640x480 crops of scikit-image's CC0 cat and coffee photos) is
made once; then, for each (processes, batch size), ``pytorch_grad_cam.batch.run`` computes and saves
every CAM into a fresh folder: in this process for 1 process, under ``torchrun`` (gloo, CPU) for
more, where each process runs this script with ``--worker``. A 2-process run gets 1 thread per
process (torchrun's default), a 1-process run all threads. The table gives images/s over the whole
run (decoding, CAM, saving the float16 CAM at the photo's size), the same as a ratio to the model's
own ``torch.no_grad()`` forward at that batch size in one process (the floor), and where the
processes' time went: waiting for the DataLoader, computing CAMs, writing files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytorch_grad_cam import batch  # noqa: E402
from pytorch_grad_cam.cli import dataset  # noqa: E402

MEAN = STD = (0.5, 0.5, 0.5)  # efficientnet-lite0's normalisation


def make_photos(folder: Path, count: int) -> None:
    """``count`` 640x480 JPEGs: shifted and mirrored crops of the cat and the coffee photos."""
    from PIL import Image
    from skimage import data

    sources = [
        np.asarray(Image.fromarray(image).resize((800, 600))) for image in (data.chelsea(), data.coffee())
    ]
    rng = np.random.default_rng(0)
    for index in range(count):
        source = sources[index % 2]
        top, left = int(rng.integers(0, 120)), int(rng.integers(0, 160))
        crop = source[top : top + 480, left : left + 640]
        if index % 4 >= 2:
            crop = crop[:, ::-1]
        sub = folder / f"part{index % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(crop)).save(sub / f"{index:05d}.jpg", quality=90)


def forward_images_per_second(model: torch.nn.Module, batch_size: int, repeats: int) -> float:
    """The model's own no_grad forward at 224x224: images/s (median of ``repeats`` after a warm-up)."""
    x = torch.randn(batch_size, 3, 224, 224)
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def summary_dict(summary: batch.BatchSummary) -> dict:
    return {
        "images": summary.written + summary.failed,
        "seconds": summary.seconds,
        "images_per_second": summary.images_per_second,
        "data_seconds": summary.data_seconds,
        "cam_seconds": summary.cam_seconds,
        "write_seconds": summary.write_seconds,
        "world_size": summary.world_size,
    }


def worker(args: argparse.Namespace) -> None:
    """One process of a torchrun job: run the batch runner, process 0 writes the summary."""
    model, layers, _ = dataset.load_model("efficientnet_lite0")
    summary = batch.run(
        model,
        layers,
        args.image_dir,
        "gradcam",
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        mean=MEAN,
        std=STD,
        progress=False,
    )
    if summary.rank == 0:
        Path(args.summary).write_text(json.dumps(summary_dict(summary)))


def measure(args: argparse.Namespace, photos: Path, work: Path, processes: int, batch_size: int) -> dict:
    output = work / f"out-p{processes}-b{batch_size}"
    if processes == 1:
        model, layers, _ = dataset.load_model("efficientnet_lite0")
        summary = batch.run(
            model,
            layers,
            photos,
            "gradcam",
            output_dir=output,
            batch_size=batch_size,
            num_workers=args.num_workers,
            mean=MEAN,
            std=STD,
            progress=False,
        )
        return summary_dict(summary)
    summary_path = work / f"summary-p{processes}-b{batch_size}.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        str(Path(__file__).resolve()), "--worker", "--image-dir", str(photos), "--output-dir", str(output),
        "--batch-size", str(batch_size), "--num-workers", str(args.num_workers),
        "--summary", str(summary_path),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_NUM_THREADS", None)  # torchrun's default: 1 thread per process
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    return json.loads(summary_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers per process")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the forward floor")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image-dir", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    model, _, _ = dataset.load_model("efficientnet_lite0")
    with tempfile.TemporaryDirectory(prefix="batch_bench_") as tmp:
        work = Path(tmp)
        photos = work / "photos"
        make_photos(photos, args.images)
        rows = []
        for processes in args.processes:
            for batch_size in args.batches:
                floor = forward_images_per_second(model, batch_size, args.repeats)
                result = measure(args, photos, work, processes, batch_size)
                rows.append((processes, batch_size, result, floor))
    print(
        f"efficientnet-lite0, GradCAM, 224x224, {args.images} JPEG photos 640x480, "
        f"{args.num_workers} DataLoader workers per process; torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} threads in one process"
    )
    print()
    print(
        "| Processes | Batch | Images/s | Forward images/s | Runner / forward | Data wait | CAM | Writing |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for processes, batch_size, result, floor in rows:
        busy = result["data_seconds"] + result["cam_seconds"] + result["write_seconds"]
        shares = [
            result[key] / busy if busy else 0.0 for key in ("data_seconds", "cam_seconds", "write_seconds")
        ]
        speed = result["images_per_second"]
        print(
            f"| {processes} | {batch_size} | {speed:.1f} | {floor:.1f} | {speed / floor:.2f} | "
            f"{shares[0]:.0%} | {shares[1]:.0%} | {shares[2]:.0%} |"
        )


if __name__ == "__main__":
    main()
