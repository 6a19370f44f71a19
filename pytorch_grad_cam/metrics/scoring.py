"""What every metric shares: argument checks, and scoring many perturbed images in batches.

A metric runs the model in eval mode under ``torch.no_grad()`` (every module's train/eval flag is
restored afterwards, no hook is registered, no ``.grad`` is written) and evaluates one target per
perturbed image on that image's output.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import (
    Target,
    as_targets,
    check_input_tensor,
    check_model_has_data,
    model_device_and_dtype,
)
from pytorch_grad_cam.base_cam import model_in_eval_mode
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

#: How many perturbed images go through the model at once unless a metric is told otherwise.
DEFAULT_BATCH_SIZE = 32


def check_model(model: object) -> nn.Module:
    """Raises TypeError unless ``model`` is an ``nn.Module``, ValueError if it holds no data (meta)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    check_model_has_data(model)
    return model


def as_cams(cams: object, input_tensor: torch.Tensor) -> torch.Tensor:
    """The CAMs of a batch as a float32 tensor on the input's device.

    Args:
        cams: ``(B, *S)`` numpy array or tensor, one map per image, where the input is
            ``(B, C, *S)`` (the output of a CAM call).
        input_tensor: the ``(B, C, *S)`` batch the maps explain.

    Raises:
        TypeError: not an array or tensor, or not real numbers.
        ValueError: a shape other than ``(B, *S)``, or NaN/inf values.
    """
    if isinstance(cams, np.ndarray):
        if not (np.issubdtype(cams.dtype, np.floating) or np.issubdtype(cams.dtype, np.integer)):
            raise TypeError(f"cams must hold real numbers; got dtype {cams.dtype}")
        cams = torch.from_numpy(np.ascontiguousarray(cams))
    elif not isinstance(cams, torch.Tensor):
        raise TypeError(
            f"cams must be a numpy array or a torch.Tensor of shape (B, H, W); got {type(cams).__name__}"
        )
    if cams.is_complex() or cams.dtype == torch.bool:
        raise TypeError(f"cams must hold real numbers; got dtype {cams.dtype}")
    expected = (input_tensor.shape[0], *input_tensor.shape[2:])
    if tuple(cams.shape) != expected:
        raise ValueError(
            f"cams has shape {tuple(cams.shape)} but input_tensor {tuple(input_tensor.shape)} needs one map "
            f"per image of its spatial size: {expected}"
        )
    cams = cams.detach().to(device=input_tensor.device, dtype=torch.float32)
    if not bool(torch.isfinite(cams).all()):
        raise ValueError("cams contains NaN or inf values")
    return cams


def check_metric_inputs(
    input_tensor: object, cams: object, targets: object, model: object
) -> tuple[torch.Tensor, torch.Tensor, list[Target] | None]:
    """Check a metric's arguments before the model is touched.

    Returns:
        The input on the model's device (and floating dtype), the maps as float32 on the same
        device, and one target per image (None: each image's top class, chosen on the
        unperturbed output).

    Raises:
        TypeError, ValueError: as :func:`check_input_tensor`, :func:`as_cams` and
            :func:`as_targets` say.
    """
    model = check_model(model)
    input_tensor = check_input_tensor(input_tensor)
    resolved = as_targets(targets, input_tensor.shape[0])
    device, dtype = model_device_and_dtype(model)
    input_tensor = input_tensor.detach().to(device=device, dtype=dtype or input_tensor.dtype)
    return input_tensor, as_cams(cams, input_tensor), resolved


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Run the body with the model in eval mode under ``torch.no_grad()``; restore the modes after."""
    with model_in_eval_mode(model), torch.no_grad():
        yield


def top_class_targets(outputs: object) -> list[Target]:
    """Each sample's top-scoring class as a :class:`ClassifierOutputTarget`."""
    logits = classifier_logits(outputs)
    return [ClassifierOutputTarget(int(k)) for k in logits.argmax(dim=-1).tolist()]


def original_scores(
    model: nn.Module, input_tensor: torch.Tensor, targets: list[Target] | None
) -> tuple[torch.Tensor, list[Target]]:
    """The targets' scores on the unperturbed batch, and the targets (the top classes if None).

    Call inside :func:`evaluating`.

    Returns:
        ``(B,)`` float32 scores on the CPU, and one target per image.
    """
    outputs = model(input_tensor)
    if targets is None:
        targets = top_class_targets(outputs)
    return target_scores(targets, outputs, input_tensor.shape[0]).cpu(), targets


def score_samples(
    model: nn.Module,
    samples: Iterable[tuple[torch.Tensor, Target]],
    batch_size: int,
    keep: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Score single images, ``batch_size`` at a time.

    Call inside :func:`evaluating`. The samples are produced lazily, so only one batch of
    perturbed images exists at a time (unless ``keep``).

    Args:
        model: the network.
        samples: ``(image, target)`` pairs, each image ``(C, *S)`` without a batch axis.
        batch_size: images per forward pass.
        keep: also return the images.

    Returns:
        ``(N,)`` float32 scores on the CPU, in the order of ``samples``, and the images (an empty
        list unless ``keep``).
    """
    scores: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    images: list[torch.Tensor] = []
    chunk_targets: list[Target] = []

    def flush() -> None:
        batch = torch.stack(images)
        scores.append(target_scores(chunk_targets, model(batch), len(images)).cpu())
        if keep:
            kept.extend(images)
        images.clear()
        chunk_targets.clear()

    for image, target in samples:
        images.append(image)
        chunk_targets.append(target)
        if len(images) == batch_size:
            flush()
    if images:
        flush()
    return (torch.cat(scores) if scores else torch.zeros(0)), kept


def to_numpy(scores: torch.Tensor) -> np.ndarray:
    """Float32 scores as a numpy array (the metrics' return type)."""
    return scores.detach().to(torch.float32).cpu().numpy()


def check_percentile(percentile: object, name: str = "percentile", allow_auto: bool = True) -> float | str:
    """A percentile in [0, 100] (or ``'auto'``, Otsu's threshold, where allowed).

    Raises:
        TypeError: not a number (nor ``'auto'``).
        ValueError: outside [0, 100], or not finite.
    """
    if allow_auto and isinstance(percentile, str) and percentile == "auto":
        return "auto"
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real):
        expected = "a number in [0, 100] or 'auto'" if allow_auto else "a number in [0, 100]"
        raise TypeError(f"{name} must be {expected}; got {percentile!r}")
    if not 0 <= float(percentile) <= 100:
        raise ValueError(f"{name} must be in [0, 100]; got {percentile}")
    return percentile


def check_percentiles(percentiles: object) -> tuple[float | str, ...]:
    """A non-empty sequence of percentiles, each as :func:`check_percentile` accepts."""
    if isinstance(percentiles, (str, bytes)) or not isinstance(percentiles, Sequence):
        raise TypeError(
            f"percentiles must be a list of numbers in [0, 100]; got {type(percentiles).__name__}"
        )
    if len(percentiles) == 0:
        raise ValueError("percentiles is empty; pass at least one, e.g. [10, 20, ..., 90]")
    return tuple(check_percentile(p, f"percentiles[{i}]") for i, p in enumerate(percentiles))
