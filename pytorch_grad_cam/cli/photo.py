"""The command line: a CAM of a photo in one command (``python cam.py`` or ``pytorch-grad-cam``).

Example:
    python cam.py --image-path examples/chelsea.png --method gradcam

writes ``gradcam_cam.jpg`` (the CAM over the photo), ``gradcam_gb.jpg`` (guided backpropagation) and
``gradcam_cam_gb.jpg`` (their product, "Guided Grad-CAM") and prints the model's top-5 classes.
``--method all`` runs every method of :data:`pytorch_grad_cam.registry.METHODS` (one that refuses the
target layer by its definition, raising :class:`~pytorch_grad_cam.errors.NotApplicableError`, such
as CAM on a layer that does not feed the final pooling, is skipped with its reason; any other
exception is reported as that method's failure in one line, the other methods still run, and the
command exits with status 1) and also writes ``cam_grid.jpg``, the photo and every method's CAM side
by side. On a CPU it runs SS-CAM and IS-CAM with a budget of samples, named in their labels
(``--full`` runs them as defined; see :mod:`pytorch_grad_cam.cli.methods`), shows a progress bar over
the methods on a terminal, writes each method's pictures as soon as it ends, and prints where the
time went. Ctrl-C ends it with one line and exit status 130.

The attention methods (``legrad``, ``attentionrollout``, ``gradientrollout``, ``attentiongradcam``)
need no ``--target-layer`` and get no reshape: on a ViT (``--model vit_b_16 --weights PATH``) they
read every block's attention (``--target-layer`` picks LeGrad's block); on a CNN they refuse
("needs a vision transformer"), a skip under ``--method all``.

The default model, ``efficientnet_lite0``, is an ImageNet classifier whose weights are installed with
the package, so it runs offline. Torchvision classifiers
(``resnet50``, ``vgg16``, ``densenet161``, ``mnasnet1_0``, ...) load their ImageNet weights through
torchvision, or from ``--weights PATH``.

Mistakes a user makes (a missing image, an unknown method, model, layer or class, CUDA that is not
there) end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.class_activation_map import CAM
from pytorch_grad_cam.cli.checks import (
    find_layer,
    layers_feeding_the_classifier,
    parse_category,
    probe,
    resolve_device,
)
from pytorch_grad_cam.cli.layer import choose_target_layer
from pytorch_grad_cam.cli.methods import Interrupted, run_methods, time_line
from pytorch_grad_cam.cli.methods import explain as explain_methods
from pytorch_grad_cam.cli.models import (
    DEFAULT_MODEL,
    LoadedModel,
    imagenet_categories,
    load_model,
    model_names,
    torchvision_family,
    torchvision_model_names,
)
from pytorch_grad_cam.cli.photo_parser import build_parser, program_name
from pytorch_grad_cam.cli.warning_lines import one_line_warnings
from pytorch_grad_cam.errors import NotApplicableError, UsageError
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.drawing import (
    GRID_COLUMNS,
    GRID_TILE_HEIGHT,
    display_size,
    grid_tile,
    load_photo,
    make_grid,
    photo_array,
    resize_map,
    save_jpg,
    to_input_tensor,
)
from pytorch_grad_cam.utils.image import deprocess_image, show_cam_on_image

__all__ = [
    # the command
    "GRID_NAME",
    "MethodsFailed",
    "build_parser",
    "explain",
    "main",
    "program_name",
    "run",
    # re-exported: they lived here before pytorch_grad_cam.cli.models and utils.drawing held them
    "DEFAULT_MODEL",
    "GRID_COLUMNS",
    "GRID_TILE_HEIGHT",
    "LoadedModel",
    "UsageError",
    "display_size",
    "find_layer",
    "grid_tile",
    "imagenet_categories",
    "load_model",
    "load_photo",
    "make_grid",
    "model_names",
    "parse_category",
    "photo_array",
    "resize_map",
    "save_jpg",
    "to_input_tensor",
    "torchvision_family",
    "torchvision_model_names",
]

#: The file with every method's CAM side by side, written by ``--method all``.
GRID_NAME = "cam_grid.jpg"


# -- the command -------------------------------------------------------------------------------


class MethodsFailed(Exception):
    """Methods that raised something other than NotApplicableError (their lines are printed already).

    The pictures of the other methods are written; the command exits with status 1.
    """

    def __init__(self, names: Sequence[str], total: int) -> None:
        super().__init__(f"{len(names)} of {total} methods failed: {', '.join(names)} (see above)")
        self.names = list(names)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _resolve_methods(text: str) -> list[str]:
    key = text.strip().lower()
    if key == "all":
        return list(METHODS)
    if key in METHODS:
        return [key]
    close = difflib.get_close_matches(key, list(METHODS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"--method {text}: unknown method; {hint}choose one of {', '.join(METHODS)}, or all")


def explain(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
    """:func:`pytorch_grad_cam.cli.methods.explain` with the command's view of the registry."""
    return explain_methods(*args, registry=kwargs.pop("registry", METHODS), **kwargs)


def run(args: argparse.Namespace, out: TextIO) -> list[Path]:
    """Carry out a parsed command line, writing the report to ``out``; returns the files written."""
    every_method = args.method.strip().lower() == "all"
    methods = _resolve_methods(args.method)
    device = resolve_device(args.use_cuda, args.device)
    loaded = load_model(args.model, args.weights)
    note = loaded.random_weights_note()
    if note is not None:
        print(f"{vars(args).get('prog') or program_name()}: note: {note}", file=sys.stderr)
    photo = load_photo(args.image_path)
    # The model sees the photo squashed to a square (as ImageNet models are evaluated); the pictures
    # keep its aspect ratio, with the model's input size as their shorter side.
    model_rgb = photo_array(photo, (loaded.input_size, loaded.input_size))
    rgb = photo_array(photo, display_size(photo, loaded.input_size))
    output_dir = Path(args.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"--output-dir {args.output_dir}: cannot create it ({error.strerror or error})"
        ) from None

    model = loaded.model.to(device)
    x = to_input_tensor(model_rgb, loaded.mean, loaded.std).to(device)
    # The attention methods need neither a target layer nor a reshape (--target-layer: their blocks).
    only_attention = all(issubclass(METHODS[name].cls, AttentionCAM) for name in methods)
    if only_attention and not args.target_layer:
        layer, layer_name, reshape_transform, reason = None, "every attention block", None, None
    else:
        chosen = choose_target_layer(loaded, args.target_layer, x)
        layer, layer_name, reshape_transform = chosen.layer, chosen.name, chosen.reshape_transform
        reason = chosen.reason
    checked = None if only_attention else layer
    logits, channels, forward_seconds = probe(model, checked, layer_name, reshape_transform, x)
    logits = logits[0].float().cpu()
    num_classes = logits.shape[0]
    categories = loaded.categories if loaded.categories and len(loaded.categories) == num_classes else None

    def class_name(index: int) -> str:
        return categories[index] if categories is not None else f"class {index}"

    top = logits.softmax(-1).topk(min(5, num_classes))
    if args.category is None:
        category = int(top.indices[0])
    else:
        category = parse_category(args.category, categories, num_classes)
    print(
        f"model {loaded.name}, target layer {layer_name} ({type(layer).__name__}), device {device}"
        if layer is not None
        else f"model {loaded.name}, attention methods on every block, device {device}",
        file=out,
    )
    if reason is not None:
        print(reason, file=out)
    print(f"top-{len(top.indices)} classes:", file=out)
    for rank, (p, k) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
        print(f"  {rank}. {class_name(k)} ({k}): {100 * p:.1f}%", file=out)
    print(f"explaining {class_name(category)} ({category})", file=out)

    shape = rgb.shape[:2]
    gb = resize_map(GuidedBackpropReLUModel(model)(x, target_category=category), shape)
    # deprocess_image standardises with a 1e-5 floor on the std: bring tiny gradients (a model with
    # vanishing scores) to a unit scale first, so that they still show.
    peak = float(np.abs(gb).max())
    gb = gb / peak if peak > 0 else gb
    gb_image = deprocess_image(gb)
    written: list[Path] = []
    overlays: dict[str, np.ndarray] = {}

    def write(name: str, cam: np.ndarray) -> None:  # as soon as the method ends
        grayscale = np.clip(resize_map(cam, shape), 0.0, 1.0)
        overlays[name] = show_cam_on_image(rgb, grayscale, use_rgb=True)
        for suffix, image in (
            ("cam", overlays[name]),
            ("gb", gb_image),
            ("cam_gb", deprocess_image(grayscale[..., None] * gb)),
        ):
            written.append(save_jpg(output_dir / f"{name}_{suffix}.jpg", image))

    def compute(name: str, options: dict[str, Any]) -> np.ndarray:
        try:
            return explain(
                model,
                layer,
                x,
                category,
                [name],
                reshape_transform=reshape_transform,
                aug_smooth=args.aug_smooth,
                eigen_smooth=args.eigen_smooth,
                batch_size=args.batch_size,
                options={name: options},
                attention_layers=[layer] if args.target_layer else None,
            )[name]
        except NotApplicableError as error:  # CAM on another layer: name the ones it can explain
            if issubclass(METHODS[name].cls, AttentionCAM):  # a CNN, or a transformer it does not know
                raise NotApplicableError(f"needs a vision transformer ({error})") from None
            layers = layers_feeding_the_classifier(model, x) if issubclass(METHODS[name].cls, CAM) else []
            if not layers:
                raise
            others = f" (or {', '.join(layers[1:])})" if layers[1:] else ""
            raise NotApplicableError(f"{error}: --target-layer {layers[0]}{others}") from None

    start = time.perf_counter()
    done = run_methods(
        methods,
        {name: METHODS[name].cls for name in methods},
        compute,
        write,
        device=device,
        channels=channels,
        every_method=every_method,
        full=args.full,
        layer_name=layer_name,
        out=out,
    )
    if every_method:
        print(time_line(done.seconds, time.perf_counter() - start, forward_seconds), file=out)
        tiles = [grid_tile(image) for image in (np.uint8(np.round(rgb * 255)), *overlays.values())]
        grid = make_grid(tiles, [f"{class_name(category)} ({category})", *done.labels.values()])
        written.append(save_jpg(output_dir / GRID_NAME, grid))
    print("wrote:", file=out)
    for path in written:
        print(f"  {path}", file=out)
    if done.failed:
        raise MethodsFailed(done.failed, len(methods))
    return written


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the single-photo command line; returns the exit status.

    0: every method ran (or, with ``--method all``, refused the layer with NotApplicableError: skipped
    with its reason); 1: a method failed with another exception (one line each on stderr; the other
    methods still ran and their pictures are written); 2: a usage error (one line on stderr).

    ``python cam.py`` and the console command ``pytorch-grad-cam`` start
    :func:`pytorch_grad_cam.cli.console.main`, which hands a command line with ``--image-dir`` to the
    dataset runner (:func:`pytorch_grad_cam.cli.dataset.main`) and every other one to this function.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    try:
        if any(a == "--image-dir" or a.startswith("--image-dir=") for a in arguments):
            raise UsageError(
                "--image-dir belongs to the dataset runner: python cam.py --image-dir DIR ..., "
                "pytorch-grad-cam --image-dir DIR ... or python -m pytorch_grad_cam.batch --image-dir DIR ..."
            )
        try:
            args = parser.parse_args(arguments)
        except SystemExit as exit_request:  # --help
            return int(exit_request.code or 0)
        if args.task != "classification":
            raise UsageError(f"--task {args.task} belongs to {program_name()} (python cam.py --task ...)")
        args.prog = parser.prog
        with one_line_warnings(parser.prog):  # the library's warnings: one line each
            run(args, sys.stdout)
    except UsageError as error:
        print(f"{parser.prog}: error: {_one_line(error)}", file=sys.stderr)  # one line, whatever it held
        return 2
    except MethodsFailed as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except Interrupted as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
