"""The dataset command's ``--evaluate``: its options, their checks, and the call of the evaluation."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from pytorch_grad_cam._core.validation import int_option
from pytorch_grad_cam.batch.evaluate import EvaluationSummary, evaluate
from pytorch_grad_cam.cli import checks, models
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.metrics.audit import SANITY_CHECKS


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """``--evaluate`` and the options only it takes."""
    group = parser.add_argument_group("evaluation (--evaluate)")
    group.add_argument(
        "--evaluate",
        action="store_true",
        help="score the methods (--method a,b,...) and the baselines on every image instead of saving "
        "maps: evaluation.json, report.html and a leaderboard; each --target-layer is scored on its own",
    )
    group.add_argument(
        "--annotations",
        help="where the objects are: a COCO .json, a Pascal VOC .xml or folder, a CSV of boxes "
        "(image,x1,y1,x2,y2), or a folder of mask PNGs (default: sanity checks only)",
    )
    group.add_argument(
        "--sanity",
        default=",".join(SANITY_CHECKS),
        help=f"sanity checks, comma separated, or none (default {','.join(SANITY_CHECKS)})",
    )
    group.add_argument(
        "--steps", type=int_option(), default=5, help="randomisation steps (groups of layers, top down)"
    )
    group.add_argument(
        "--no-baselines", action="store_true", help="leave out the random, centre and edge maps"
    )
    group.add_argument("--worst", type=int_option(minimum=0), default=4, help="worst images per method shown")


def evaluate_command(
    args: argparse.Namespace,
    loaded: models.LoadedModel,
    layers: list[nn.Module],
    reshape_transform: Any,
    image_size: int | tuple[int, int],
    device: torch.device | str,
    category: int | None,
) -> EvaluationSummary:
    """Run the evaluation the command line asks for.

    Raises:
        UsageError: an option the evaluation does not take, or an unknown sanity check.
    """
    refused = [
        option
        for option, given in (
            ("--save-overlay", args.save_overlay),
            ("--cam-size", args.cam_size is not None),
            ("--aug-smooth", args.aug_smooth),
            ("--eigen-smooth", args.eigen_smooth),
        )
        if given
    ]
    if refused:
        raise UsageError(f"--evaluate does not take {', '.join(refused)}")
    sanity = (
        []
        if args.sanity.strip().lower() == "none"
        else [c.strip() for c in args.sanity.split(",") if c.strip()]
    )
    unknown = [check for check in sanity if check not in SANITY_CHECKS]
    if unknown:
        raise UsageError(
            f"--sanity: unknown check {', '.join(unknown)}; choose from {', '.join(SANITY_CHECKS)} or none"
        )
    target: Any = layers
    if args.target_layer and len(args.target_layer) > 1:
        target = {path: checks.find_layer(loaded.model, path)[0] for path in args.target_layer}
    return evaluate(
        loaded.model,
        target,
        args.image_dir,
        args.method,
        output_dir=args.output_dir,
        annotations=args.annotations,
        sanity=sanity,
        steps=args.steps,
        baselines=not args.no_baselines,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        image_size=image_size,
        mean=loaded.mean,
        std=loaded.std,
        targets=category,
        class_names=loaded.categories,
        reshape_transform=reshape_transform,
        device=device,
        resume=not args.no_resume,
        progress=False if args.no_progress else None,
        worst=args.worst,
    )
