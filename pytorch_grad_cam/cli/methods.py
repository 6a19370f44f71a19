"""The command line's loop over methods: the CPU budget of the per-channel scoring methods under
``--method all``, a progress bar over the methods with an estimate, each method's pictures written as
soon as it ends, where the time went, and an interrupt that ends in one line.

The budget: on a CPU, ``--method all`` runs SS-CAM and IS-CAM with 2 samples instead of their 35
and 10 (each sample is one masked forward pass per channel: SS-CAM's 35 x 320 channels of the default
model are 11,200 passes, tens of minutes on 2 cores). They still run, so the gallery shows every
method, and their label says so ("sscam (2 of 35 samples)"); ``--full`` runs them as defined. ScoreCAM
and AblationCAM are one pass per channel at most (AblationCAM fewer, see its routes) and run in full.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.progress import progress_bar
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.errors import NotApplicableError, UsageError
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

__all__ = [
    "BUDGETS",
    "FULL_OPTION",
    "Interrupted",
    "MethodsRun",
    "budget_label",
    "budget_options",
    "estimated_cost",
    "explain",
    "is_attention_method",
    "run_methods",
    "time_line",
]

#: The flag that runs the budgeted methods as defined.
FULL_OPTION = "--full"

#: method name -> its constructor options under ``--method all`` on a CPU (without ``--full``).
BUDGETS: dict[str, dict[str, int]] = {"sscam": {"num_samples": 2}, "iscam": {"num_samples": 2}}

#: Rough cost of a method, in forward passes of the model, for the progress bar's estimate:
#: ``per_channel`` of them are multiplied by the layer's channels / 10 (batched masked passes).
_COSTS = {"fullgrad": 3.0, "smoothgradcam++": 5.0, "shapleycam": 2.0}
_PER_CHANNEL = ("scorecam", "ablationcam", "sscam", "iscam")


class Interrupted(Exception):
    """Ctrl-C during the methods: the pictures of the methods that ended are on disk."""


@dataclasses.dataclass
class MethodsRun:
    """What the loop did.

    Attributes:
        cams: method name -> ``(H, W)`` CAM, for the methods that ran.
        labels: method name -> its label in the grid (the name, plus its budget if it had one).
        failed: the methods that raised something other than NotApplicableError.
        seconds: method name -> its time, for every method that ended (ran, skipped or failed).
    """

    cams: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    failed: list[str] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def budget_options(name: str, device: torch.device, every_method: bool, full: bool) -> dict[str, int]:
    """The constructor options that cut ``name``'s cost: only under ``--method all`` on a CPU without
    ``--full``; empty otherwise (the method as defined)."""
    if every_method and not full and device.type == "cpu":
        return dict(BUDGETS.get(name, {}))
    return {}


def budget_label(cls: type, options: Mapping[str, Any]) -> str:
    """``options`` against ``cls``'s own defaults, in words: ``"2 of 35 samples"`` ('' when none)."""
    parameters = inspect.signature(cls).parameters
    parts = []
    for key, value in options.items():
        default = parameters[key].default if key in parameters else "?"
        parts.append(f"{value} of {default} {key[4:] if key.startswith('num_') else key}")
    return ", ".join(parts)


def estimated_cost(name: str, channels: int, options: Mapping[str, Any], cls: type) -> float:
    """A method's rough cost in forward passes (for the estimate of the time left, not a promise)."""
    if name in _PER_CHANNEL:
        samples = options.get("num_samples")
        if samples is None:
            default = inspect.signature(cls).parameters.get("num_samples")
            samples = default.default if default is not None else 1
        return max(1.0, channels / 10) * samples
    return _COSTS.get(name, 1.2)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _say(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def run_methods(
    names: Sequence[str],
    classes: Mapping[str, type],
    compute: Callable[[str, dict[str, Any]], np.ndarray],
    write: Callable[[str, np.ndarray], None],
    *,
    device: torch.device,
    channels: int,
    every_method: bool,
    full: bool,
    layer_name: str,
    out: TextIO,
) -> MethodsRun:
    """Run each method, writing its pictures (``write(name, cam)``) as soon as it ends.

    Args:
        names: the methods, in order.
        classes: method name -> its class (for its default options).
        compute: ``compute(name, options)`` -> the method's ``(H, W)`` CAM.
        write: writes one method's pictures.
        device: where the model runs (the budget applies on a CPU).
        channels: the target layer's channels (for the estimate).
        every_method: ``--method all`` (a refusal is a skip, not a usage error).
        full: ``--full``: no budget.
        layer_name: for messages.
        out: the report.

    Raises:
        UsageError: a single method refused the layer.
        Interrupted: Ctrl-C; the methods that ended have their pictures on disk.
    """
    result = MethodsRun()
    plans = {name: budget_options(name, device, every_method, full) for name in names}
    costs = {name: estimated_cost(name, channels, plans[name], classes[name]) for name in names}
    bar = progress_bar(round(sum(costs.values()), 1), "methods", None if len(names) > 1 else False)
    bar.bar_format = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} (estimate)"
    name = names[0] if names else ""
    try:
        for index, name in enumerate(names, start=1):
            bar.set_description_str(f"[{index}/{len(names)}] {name}")
            start = time.perf_counter()
            label = budget_label(classes[name], plans[name])
            try:
                cam = compute(name, plans[name])
            except NotApplicableError as error:  # the method cannot explain this layer, by its definition
                if not every_method:
                    raise UsageError(f"--method {name} on layer {layer_name}: {error}") from None
                _say(out, f"skipped {name}: {_one_line(error)}")
            except Exception as error:  # a failure, not a refusal: reported, the other methods still run
                result.failed.append(name)
                _say(sys.stderr, f"failed {name}: {type(error).__name__}: {_one_line(error)}")
            else:
                write(name, cam)
                result.cams[name] = cam
                result.labels[name] = f"{name} ({label})" if label else name
                seconds = time.perf_counter() - start
                note = f" ({label}: a budget on the CPU; {FULL_OPTION} runs it in full)" if label else ""
                _say(out, f"{name}: {seconds:.1f} s{note}")
            result.seconds[name] = time.perf_counter() - start
            bar.update(costs[name])
    except KeyboardInterrupt:
        done = len(result.seconds)
        raise Interrupted(
            f"interrupted during {name}: {done} of {len(names)} methods ended, "
            f"{len(result.cams)} with their pictures written"
        ) from None
    finally:
        bar.close()
    return result


def time_line(seconds: Mapping[str, float], total: float, forward: float) -> str:
    """Where the time went, in one line: the total, and the methods that took most of it."""
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    big = [(name, s) for name, s in ranked if s >= 0.05 * total][:5]
    parts = ", ".join(f"{name} {s:.1f} s" for name, s in big)
    rest = len(seconds) - len(big)
    others = total - sum(s for _, s in big)
    tail = f", the other {rest} {'method' if rest == 1 else 'methods'} {others:.1f} s"
    ratio = ""
    if forward > 0:
        ratio = f" ({total / forward:.0f} forward passes of the model, {forward * 1000:.0f} ms each)"
    return f"methods took {total:.1f} s{ratio}: {parts}{tail if rest else ''}"


def is_attention_method(name: str) -> bool:
    """Whether the registered method ``name`` reads a transformer's attention
    (:class:`~pytorch_grad_cam.attention.base.AttentionCAM`: no reshape_transform, no target layer
    needed)."""
    return issubclass(METHODS[name].cls, AttentionCAM)


def explain(
    model: nn.Module,
    layer: nn.Module | None,
    x: torch.Tensor,
    category: int,
    methods: Sequence[str],
    *,
    reshape_transform: Callable[..., torch.Tensor] | None = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    batch_size: int | None = None,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    attention_layers: Sequence[nn.Module] | None = None,
    registry: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Each method's CAM of ``category`` on the single image ``x``.

    Args:
        model: the classifier.
        layer: the target layer (None: only attention methods are asked for).
        x: ``(1, 3, H, W)`` the model's input.
        category: the class to explain.
        methods: names from :data:`pytorch_grad_cam.registry.METHODS`.
        reshape_transform: for token outputs.
        aug_smooth: test-time augmentation smoothing.
        eigen_smooth: principal-component smoothing.
        batch_size: passed to the methods whose constructor takes ``batch_size`` (those that run
            batches of forward passes); ignored by the others.
        seed: each method runs with torch's random generators seeded with it (methods that draw
            random numbers give the same map every run); the caller's generator state is restored.
        options: method name -> more keyword arguments for its constructor (a budget).
        attention_layers: the blocks given to the attention methods (which take neither ``layer`` nor
            ``reshape_transform``); default None: their own default (every block).
        registry: method name -> its :class:`~pytorch_grad_cam.registry.MethodInfo` (default:
            :data:`~pytorch_grad_cam.registry.METHODS`).

    Returns:
        method name -> ``(H, W)`` float32 CAM in [0, 1].
    """
    cams: dict[str, np.ndarray] = {}
    for name in methods:
        cls = (METHODS if registry is None else registry)[name].cls
        kwargs: dict[str, Any] = dict((options or {}).get(name, {}))
        if batch_size is not None and "batch_size" in inspect.signature(cls).parameters:
            kwargs["batch_size"] = batch_size
        if issubclass(cls, AttentionCAM):
            layers = list(attention_layers) if attention_layers else None
            cam = cls(model=model, target_layers=layers, **kwargs)
        else:
            if layer is None:
                raise UsageError(f"--method {name} needs a target layer; pass --target-layer PATH")
            cam = cls(model=model, target_layers=[layer], reshape_transform=reshape_transform, **kwargs)
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            cams[name] = cam(
                input_tensor=x,
                targets=[ClassifierOutputTarget(category)],
                aug_smooth=aug_smooth,
                eigen_smooth=eigen_smooth,
            )[0]
    return cams
