"""A CAM call on a model with several inputs: one map per image input with a layer on its path.

Each image input is explained on its own by the one-input machinery, the model seen as a function
of that input with the others held fixed (:class:`~pytorch_grad_cam._core.inputs.OneInputVaried`):
its layers are the target layers on its path (:func:`~pytorch_grad_cam._core.input_paths.input_paths`),
or the automatic layer searched among them. docs/multi-input.md has the whole story.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Hashable, Mapping

import torch

from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.input_paths import input_paths
from pytorch_grad_cam._core.inputs import ModelInputs, OneInputVaried, as_model_inputs, moved
from pytorch_grad_cam._core.modes import model_in_eval_mode
from pytorch_grad_cam._core.validation import as_targets, check_call_options, model_device_and_dtype
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.layer_search import LayerChoice, find_target_layer
from pytorch_grad_cam.layer_search.cache import _targets_key
from pytorch_grad_cam.utils.model_targets import ImageTextTarget

#: A :class:`~pytorch_grad_cam.base_cam.BaseCAM` (not imported here: base_cam imports this module).
BaseCAM = Any


@dataclasses.dataclass
class _Plan:
    layers: list
    reshape_transform: Any
    layer_call: Any
    choice: LayerChoice | None = None


def several_input_maps(
    cam: BaseCAM,
    input_tensor: tuple | list | Mapping,
    targets: Any,
    aug_smooth: bool,
    eigen_smooth: bool,
    target_category: Any = None,
) -> Any:
    """The call's maps in the structure of ``input_tensor`` (:meth:`ModelInputs.returned`), as tensors.

    Raises:
        NotApplicableError: a method that perturbs or re-runs the input (``cam.several_inputs`` False).
        ValueError: ``aug_smooth``, inputs that do not share the batch axis, a target layer on no
            image input's path, or no image input with a layer on its path.
    """
    targets = check_call_options(targets, target_category, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
    name = type(cam).__name__
    if not cam.several_inputs:
        raise NotApplicableError(
            f"{name} does not take several inputs: it perturbs or re-runs the image (masked, ablated or "
            "noisy copies in a batch of their own), which the model's other inputs would not match. Use a "
            "gradient method (GradCAM, GradCAM++, XGradCAM, LayerCAM, HiResCAM, EigenCAM, EigenGradCAM)"
        )
    if aug_smooth:
        raise ValueError(
            f"aug_smooth=True flips and rescales one image but not the model's other inputs (a second "
            f"view, a mask): not supported with several inputs ({name}); eigen_smooth=True is"
        )
    inputs = as_model_inputs(input_tensor)
    device, dtype = model_device_and_dtype(cam.model)
    inputs = moved(inputs, cam.device if cam.device is not None else device, dtype)
    resolved = as_targets(targets, inputs.batch_size)
    plans = _plans(cam, inputs, resolved)
    model = cam.model
    # _frames_first too: a clip given frames first wraps the varied model, which holds the inputs
    saved = (
        cam.model, cam.target_layers, cam.reshape_transform, cam.auto_target_layers, cam.layer_call,
        cam._frames_first,
    )  # fmt: skip
    maps, findings = {}, []
    try:
        for key, plan in plans.items():
            cam.model = OneInputVaried(model, inputs, key)
            cam.target_layers, cam.reshape_transform = plan.layers, plan.reshape_transform
            cam.auto_target_layers, cam.layer_call = False, plan.layer_call
            maps[key] = cam._maps(inputs.values[key], resolved, False, eigen_smooth)
            findings += [f.in_wrapped_model(f"{inputs.label(key)}: ") for f in cam.diagnostics]
    finally:
        (
            cam.model, cam.target_layers, cam.reshape_transform, cam.auto_target_layers, cam.layer_call,
            cam._frames_first,
        ) = saved  # fmt: skip
    cam.diagnostics = findings
    cam.layer_choices = {k: p.choice for k, p in plans.items() if p.choice is not None}
    cam.layer_choice = next(iter(cam.layer_choices.values()), None)
    return inputs.returned(maps)


def as_numpy(maps: Any) -> Any:
    """:func:`several_input_maps`'s result with each map as a numpy array (None kept)."""
    if isinstance(maps, dict):
        return {k: v.cpu().numpy() for k, v in maps.items()}
    return type(maps)(None if v is None else v.cpu().numpy() for v in maps)


def _plans(cam: BaseCAM, inputs: ModelInputs, targets: Any) -> dict[Hashable, _Plan]:
    """Per image input with a layer on its path: its layers, their transform and ``layer_call``."""
    model, images = cam.model, inputs.image_keys()
    auto = cam.auto_target_layers
    if auto:
        key = (
            tuple(
                (k, tuple(v.shape), v.dtype) for k, v in inputs.values.items() if isinstance(v, torch.Tensor)
            ),
            _targets_key(targets),
            tuple(id(m) for m in model.modules()),  # cam.model may be reassigned between calls
        )
        cached = cam._several_cache.get(key)
        if cached is not None:
            return cached
    watched = [m for m in model.modules() if m is not model] if auto else cam.target_layers
    with torch.inference_mode(False), model_in_eval_mode(model):
        paths = input_paths(model, inputs, images, watched)
    plans: dict[Hashable, _Plan] = {}
    if not auto:
        for index, layer in enumerate(cam.target_layers):
            if not any(id(layer) in paths[k] for k in images):
                raise ValueError(
                    f"target_layers[{index}] ({type(layer).__name__}) depends on none of the image inputs "
                    f"({', '.join(inputs.label(k) for k in images)}): its output did not change when each "
                    "was varied; pick a layer on an image input's path"
                )
        calls = cam.layer_call
        for k in images:
            chosen = [i for i, layer in enumerate(cam.target_layers) if id(layer) in paths[k]]
            if chosen:
                per_layer = [calls[i] for i in chosen] if isinstance(calls, list) else calls
                plans[k] = _Plan(
                    [cam.target_layers[i] for i in chosen], cam._user_reshape_transform, per_layer
                )
        return plans
    refused = []
    for k in images:
        on_path = [m for m in watched if id(m) in paths[k]]
        if not on_path:
            refused.append(f"{inputs.label(k)}: no module depends on it")
            continue
        # decided on the first sample, as the one-input search is; the texts an ImageTextTarget
        # indexes are a batch of their own, kept whole (with as many texts as images too)
        first = inputs.first(integers_apart=any(isinstance(t, ImageTextTarget) for t in targets or ()))
        wrapper = OneInputVaried(model, first, k)
        try:
            choice = find_target_layer(wrapper, first.values[k], targets and targets[:1], among=on_path)
        except ValueError as error:
            refused.append(f"{inputs.label(k)}: {error}")
            continue
        batch_shape = (inputs.batch_size, *choice.output_shape[1:])
        choice = dataclasses.replace(choice.in_wrapped_model(), output_shape=batch_shape)
        transform = cam._user_reshape_transform or choice.reshape_transform
        plans[k] = _Plan([choice.layer], transform, None, choice)
    if not plans:
        raise ValueError("no image input has a layer on its path to explain: " + "; ".join(refused))
    if refused:
        warnings.warn("not explained (no map): " + "; ".join(refused), stacklevel=caller_level())
    cam._several_cache[key] = plans
    return plans
