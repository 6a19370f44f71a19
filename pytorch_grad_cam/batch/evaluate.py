"""The dataset evaluation: every chosen method (and layer) and the baselines scored on every image.

It runs on the dataset runner's machinery (:mod:`pytorch_grad_cam.batch`): the same sources, plan,
lock, manifest shards, resume and ``torchrun`` split, with one record per image holding its scores
(``manifest.jsonl``); process 0 then writes ``evaluation.json`` (per image, per explainer, per
metric, and the leaderboard) and ``report.html`` (:mod:`pytorch_grad_cam.batch.evaluation_report`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pytorch_grad_cam._core.validation import positive_int
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.batch.arguments import normalisation, pair, show_progress
from pytorch_grad_cam.batch.compute import timed_groups
from pytorch_grad_cam.batch.evaluate_inputs import annotation_source, chosen_methods, group_masks, layer_sets
from pytorch_grad_cam.batch.evaluation_report import write_evaluation
from pytorch_grad_cam.batch.files import append_only
from pytorch_grad_cam.batch.manifest import SHARD_DIR, merge_manifest
from pytorch_grad_cam.batch.plan import make_plan
from pytorch_grad_cam.batch.sources import DatasetSamples, FolderSamples, Sample, as_list
from pytorch_grad_cam.batch.world import World, join_world, resolve_device
from pytorch_grad_cam.batch.writer import record_line
from pytorch_grad_cam.errors import ConfigError
from pytorch_grad_cam.metrics.audit import SANITY_CHECKS, audit_batch
from pytorch_grad_cam.metrics.baselines import BASELINES
from pytorch_grad_cam.metrics.explainers import Explainer, baseline_explainer, cam_explainer, layer_names

EVALUATION_NAME = "evaluation.json"
REPORT_NAME = "report.html"
#: the manifest records' ``method``: an evaluation's records are never taken for a CAM run's
RECORD_KIND = "evaluate"


@dataclasses.dataclass
class EvaluationSummary:
    """What an evaluation did (counts over all processes) and where it wrote.

    Attributes:
        leaderboard: the markdown leaderboard (explainers x metrics, ``*`` where a method does not
            beat the best baseline), for the command to print.
    """

    total: int
    scored: int
    failed: int
    skipped: int
    seconds: float
    evaluation: Path
    report: Path | None
    leaderboard: str
    world_size: int = 1
    rank: int = 0

    def line(self) -> str:
        """One line: what was scored and where the outputs are."""
        done = f", {self.skipped} done before" if self.skipped else ""
        failed = f", {self.failed} failed" if self.failed else ""
        report = f" and {self.report.name}" if self.report is not None else ""
        return (
            f"scored {self.scored} of {self.total} images{done}{failed} in {self.seconds:.1f} s "
            f"on {self.world_size} process(es): {self.evaluation}{report}"
        )


def evaluate(
    model: nn.Module,
    target_layers: nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module | Sequence[nn.Module]],
    dataset_or_dir: str | os.PathLike | Dataset,
    methods: str | type[BaseCAM] | Sequence[str | type[BaseCAM]] = "gradcam",
    *,
    output_dir: str | os.PathLike,
    annotations: Any = None,
    sanity: Sequence[str] = SANITY_CHECKS,
    steps: int | None = 5,
    baselines: bool = True,
    batch_size: int = 16,
    num_workers: int = 2,
    image_size: int | tuple[int, int] = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    targets: int | Callable[[Any], int] | None = None,
    class_names: Sequence[str] | None = None,
    reshape_transform: Callable[[Any], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    resume: bool = True,
    progress: bool | None = None,
    html: bool = True,
    seed: int = 1810,
    tolerance: float = 15,
    iou_threshold: float = 0.5,
    worst: int = 4,
) -> EvaluationSummary:
    """Score methods, layers and baselines on every image of a folder or dataset.

    Call it the same way in every process of a ``torchrun`` job. Arguments shared with
    :func:`~pytorch_grad_cam.batch.run` mean the same (folders, datasets, sizes, normalisation,
    ``targets``, ``device``, ``resume``, ``progress``); the others:

    Args:
        target_layers: the layers, or ``{label: layers}`` to compare several (each method is then
            scored once per label, as ``method@label``).
        methods: names (a list, or one string ``"gradcam,layercam"``) or BaseCAM subclasses.
        annotations: where the objects are, for the localisation metrics: a path (COCO ``.json``,
            VOC ``.xml`` or folder, box ``.csv``, folder of mask ``.png``), a mapping image name ->
            :class:`~pytorch_grad_cam.metrics.annotations.Annotation`, or a callable ``meta ->
            Annotation`` (datasets). None: the sanity checks only.
        sanity: the checks of :data:`~pytorch_grad_cam.metrics.audit.SANITY_CHECKS` to run.
        steps: the cascading randomisation's steps (groups of layers, top first); None: every layer.
        baselines: also score the random map, the centre Gaussian and the edge map.
        html: write ``report.html``.
        seed, tolerance, iou_threshold: the randomisation's seed; the pointing game's tolerance in
            pixels of the model input; the IoU's threshold (share of each map's maximum).
        worst: how many of the worst images per method the report shows with their maps.

    Returns:
        The summary (the same in every process).

    Raises:
        ConfigError: arguments that do not fit together, an unreadable annotation file, an
            ``output_dir`` made with other settings or in use.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    chosen = chosen_methods(methods)
    sets = layer_sets(model, target_layers)
    unknown = [check for check in sanity if check not in SANITY_CHECKS]
    if unknown:
        raise ConfigError(f"sanity must name checks of {SANITY_CHECKS}; got {unknown}")
    found, source = annotation_source(annotations)
    if found is None and not sanity:
        raise ConfigError("nothing to score: give annotations, or keep the sanity checks")
    batch_size = positive_int(batch_size, "batch_size")
    num_workers = positive_int(num_workers, "num_workers", minimum=0)
    worst = positive_int(worst, "worst", minimum=0)
    if steps is not None:
        steps = positive_int(steps, "steps")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise ConfigError(f"tolerance must be a number of pixels >= 0; got {tolerance!r}")
    if not isinstance(iou_threshold, (int, float)) or not 0 < iou_threshold <= 1:
        raise ConfigError(f"iou_threshold must be in (0, 1]; got {iou_threshold!r}")
    image_hw = pair(image_size, "image_size")
    mean, std = normalisation(mean, std, detection=False)
    output_dir = Path(output_dir)
    if isinstance(dataset_or_dir, (str, os.PathLike)):
        image_dir, dataset = Path(dataset_or_dir), None
        if not image_dir.is_dir():
            raise ConfigError(f"dataset_or_dir: {image_dir} is not a folder")
        if image_dir.resolve() == output_dir.resolve():
            raise ConfigError("output_dir must not be the image folder itself; use a separate folder")
    elif isinstance(dataset_or_dir, (Dataset, Sequence)):
        image_dir, dataset = None, dataset_or_dir
    else:
        raise TypeError(
            f"dataset_or_dir must be a folder or a map-style dataset; got {type(dataset_or_dir).__name__}"
        )
    explainers: dict[str, Explainer] = {}
    for label, layers in sets.items():
        for cam_class, name in chosen:
            key = f"{name}@{label}" if label else name
            explainers[key] = cam_explainer(model, cam_class, layers, reshape_transform=reshape_transform)
    if baselines:
        for name in BASELINES:
            explainers[name] = baseline_explainer(name, mean=mean, std=std, seed=seed)
    settings = {
        "kind": RECORD_KIND,
        "explainers": list(explainers),
        "layers": {label: layer_names(model, layers) for label, layers in sets.items()},
        "annotations": source,
        "sanity": list(sanity),
        "steps": steps,
        "input": "folder" if image_dir is not None else "dataset",
        "image_size": list(image_hw),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "targets": "callable" if callable(targets) else targets,
        "seed": seed,
        "tolerance": tolerance,
        "iou_threshold": iou_threshold,
    }
    world = join_world()
    try:
        options = dict(
            image_dir=image_dir,
            dataset=dataset,
            output_dir=output_dir,
            settings=settings,
            explainers=explainers,
            annotations=found,
            batch_size=batch_size,
            num_workers=num_workers,
            image_hw=image_hw,
            mean=mean,
            std=std,
            targets=targets,
            class_names=class_names,
            device=resolve_device(device, model, world),
            resume=resume,
            show_progress=show_progress(progress, world),
            html=html,
            worst=worst,
        )
        return _evaluate(world, model, **options)
    finally:
        world.close()


def _number(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(float(value)) else None


def _evaluate(world: World, model: nn.Module, **o: Any) -> EvaluationSummary:
    started = time.perf_counter()
    output_dir, image_dir, dataset = o["output_dir"], o["image_dir"], o["dataset"]
    names, pending, lock = make_plan(
        world,
        image_dir=image_dir,
        dataset=dataset,
        output_dir=output_dir,
        settings=o["settings"],
        batch_size=o["batch_size"],
        method_name=RECORD_KIND,
        overlay=False,
        thumbnail=False,
        resume=o["resume"],
        complete=lambda record: record is not None and record.get("method") == RECORD_KIND,
    )
    try:
        if not names and world.rank == 0:
            warnings.warn(
                f"no images in {image_dir if image_dir is not None else 'the dataset'}", stacklevel=3
            )
        mine = pending[world.rank :: world.size]
        batches = [list(range(b * o["batch_size"], min(len(names), (b + 1) * o["batch_size"]))) for b in mine]
        if image_dir is not None:
            files = [str(image_dir / name) for name in names]
            samples: Dataset = FolderSamples(
                files,
                image_size=o["image_hw"],
                cam_size=None,
                mean=o["mean"],
                std=o["std"],
                overlay=False,
                thumbnail=False,
            )
        else:
            samples = DatasetSamples(dataset, cam_size=None, overlay=False, thumbnail=False)
        loader = DataLoader(samples, batch_sampler=batches, num_workers=o["num_workers"], collate_fn=as_list)
        settings, targets, device = o["settings"], o["targets"], o["device"]

        def explain(group: list[Sample]) -> dict[int, dict]:
            images = torch.stack([sample.tensor for sample in group]).to(device)
            classes = None
            if targets is not None:
                classes = [
                    int(targets(sample.meta if image_dir is None else names[sample.index]))
                    if callable(targets)
                    else int(targets)
                    for sample in group
                ]
            masks = group_masks(o["annotations"], group, names, tuple(images.shape[-2:]))
            audit = audit_batch(
                model,
                images,
                o["explainers"],
                classes=classes,
                masks=masks,
                sanity=settings["sanity"],
                steps=settings["steps"],
                seed=settings["seed"],
                keys=[sample.index for sample in group],
                tolerance=settings["tolerance"],
                threshold=settings["iou_threshold"],
            )
            results = {}
            for row, sample in enumerate(group):
                results[sample.index] = {
                    "class": audit.classes[row],
                    "scores": {
                        name: {metric: _number(values[row]) for metric, values in scores.items()}
                        for name, scores in audit.scores.items()
                    },
                    "curves": {
                        name: [_number(v) for v in curve[:, row]] for name, curve in audit.curves.items()
                    },
                    "curve_layers": audit.layers,
                }
            return results

        counts = {"scored": 0, "failed": 0}
        bar = None
        if o["show_progress"]:
            from tqdm import tqdm

            bar = tqdm(total=sum(len(b) for b in batches), unit="img", desc="evaluate", dynamic_ncols=True)
        shard = output_dir / SHARD_DIR / f"rank-{world.rank:05d}.jsonl"
        try:
            with append_only(shard) as shard_file:
                for batch, _, _ in timed_groups(loader, explain):
                    lines = []
                    for sample, result in batch:
                        record: dict[str, Any] = {"name": names[sample.index], "method": RECORD_KIND}
                        if image_dir is not None:
                            record["image"] = str(image_dir / names[sample.index])
                        if sample.error is not None or result is None:
                            record.update(status="error", error=sample.error or "not scored")
                            counts["failed"] += 1
                        else:
                            record.update(status="ok", **result)
                            counts["scored"] += 1
                        lines.append(record_line(record))
                    shard_file.write("".join(lines))
                    shard_file.flush()
                    if bar is not None:
                        bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        scored, failed = world.reduce([counts["scored"], counts["failed"]], "sum")
        (elapsed,) = world.reduce([time.perf_counter() - started], "max")
        text, report = "", None
        if world.rank == 0:
            records = merge_manifest(output_dir, names)
            text, report = write_evaluation(
                output_dir,
                records,
                settings,
                class_names=o["class_names"],
                html=o["html"],
                worst=o["worst"],
                render=_renderer(model, o, names, samples, device),
            )
        text, report = world.broadcast((text, report))
        computed = int(scored) + int(failed)
        return EvaluationSummary(
            total=len(names),
            scored=int(scored),
            failed=int(failed),
            skipped=len(names) - computed,
            seconds=elapsed,
            evaluation=output_dir / EVALUATION_NAME,
            report=report,
            leaderboard=text,
            world_size=world.size,
            rank=world.rank,
        )
    finally:
        if lock is not None:
            lock.release()


def _renderer(model: nn.Module, o: dict, names: Sequence[str], samples: Dataset, device: torch.device):
    """``render(name, explainer, class) -> (H, W, 3) uint8``: an image's map over it, for the report."""
    index = {name: i for i, name in enumerate(names)}

    def render(name: str, explainer: str, klass: int):
        from pytorch_grad_cam.batch.sources import tensor_as_rgb
        from pytorch_grad_cam.utils.image import show_cam_on_image

        sample = samples[index[name]]
        if sample.error is not None:
            return None
        images = sample.tensor[None].to(device)
        cam = o["explainers"][explainer](model, images, [klass])[0].detach().float().cpu().numpy()
        rgb = tensor_as_rgb(sample.tensor, tuple(cam.shape))
        return show_cam_on_image(rgb.astype("float32") / 255.0, cam, use_rgb=True)

    return render
