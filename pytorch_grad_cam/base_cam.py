"""BaseCAM: the orchestration every CAM method shares.

A method subclasses :class:`BaseCAM` and says only how channel weights are computed
(:meth:`BaseCAM.get_cam_weights`). BaseCAM runs the capture, picks targets, differentiates,
reduces the weighted activations (channel sum or first principal component), scales, resizes,
combines layers and applies test-time augmentation.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, ClassVar, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.activations_and_gradients import (
    ActivationsAndGradients,
    as_layer_calls,
)
from pytorch_grad_cam.diagnostics import Finding, blank_images, diagnose_maps, warn_findings
from pytorch_grad_cam.layer_outputs import check_reached, to_spatial
from pytorch_grad_cam.layer_search import LayerChoice, automatic_layers
from pytorch_grad_cam.utils.detection import gradient_forward, network_of
from pytorch_grad_cam.utils.detection_targets import (
    bind_detection_targets,
    default_detection_targets,
    reads_scores_only,
    refuse_aug_smooth,
    unbind_detection_targets,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.modes import model_in_eval_mode, without_autocast
from pytorch_grad_cam.utils.outputs import classifier_logits, detach_outputs
from pytorch_grad_cam.utils.target_scores import target_scores
from pytorch_grad_cam.utils.tensor_result import tensor_result_requested
from pytorch_grad_cam.utils.validation import (
    Target,
    as_target_layers,
    as_targets,
    check_finite_output,
    check_input_tensor,
    check_model_differentiable,
    check_model_has_data,
    check_model_runs_eagerly,
    model_device_and_dtype,
    rejected_input,
    resolve_device,
)

ReshapeTransform = Callable[[Any], torch.Tensor]


class CapturedView(NamedTuple):
    """What one forward (and backward) of a view gave: see :meth:`BaseCAM.run_view`."""

    outputs: Any
    targets: list[Target] | None
    activations: list[torch.Tensor]
    gradients: list[torch.Tensor | None]
    #: per target layer, its raw output (before ``reshape_transform``), detached
    layer_outputs: Sequence[Any] = ()


#: The test-time augmentations of ``aug_smooth=True``: (horizontal flip, multiplier). The
#: identity view comes first: its prediction picks the targets of every view.
AUG_SMOOTH_VIEWS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (1.0, 0.9, 1.1)
)


class BaseCAM:
    """Base class of the CAM methods.

    Args:
        model: the network. It is left exactly as it was (modes, hooks, ``requires_grad``,
            ``.grad``), except that ``use_cuda=True`` or ``device=`` move it, as asked.
        target_layers: the modules to explain, e.g. ``[model.layer4[-1]]`` (a single module is
            accepted too). Several layers give the mean of their maps. Omitted (with
            ``target_layer``): chosen on the first call for the model and input shape by
            :func:`~pytorch_grad_cam.utils.find_layers.find_target_layer`; ``target_layers``,
            ``reshape_transform`` and ``layer_choice`` then hold the choice.
        use_cuda: the seed's flag: move the model and inputs to CUDA. As the third positional
            argument a callable is taken as ``reshape_transform`` (the 1.5.x order).
        reshape_transform: maps a target layer's output (and, alike, its gradient) to
            ``(B, C, h, w)`` (or ``(B, C, d, h, w)``), e.g. for the tokens of a transformer. Given
            with the target layers omitted, it is used with the chosen layer.
        target_layer: the seed's spelling of a single target layer.
        device: run on this device (the model is moved there). Default: the model's device.
        layer_call: for a target layer that runs more than once in one forward pass (a shared
            block, a recurrent cell, a module used at several scales), which call to explain: its
            0-based index, or a list with one index (or None) per target layer. By default each
            target layer must run exactly once: otherwise the call raises a ValueError saying how
            often it ran. (To combine calls, average the maps of ``layer_call=0, 1, ...``.)

    Subclasses set the class attributes ``uses_gradients``, ``uses_targets`` and
    ``always_eigen``, and implement :meth:`get_cam_weights`. Methods that need more override a
    hook: :meth:`get_cam_image` (one layer's map), :meth:`layer_maps` (all layers at once, e.g.
    with extra passes through :meth:`run_view`), :meth:`differentiate` (other gradients, e.g.
    second derivatives), :meth:`default_targets`, or ``_cams`` (a different pipeline per view).

    Attributes:
        layer_choice: the automatic choice of the last call (a
            :class:`~pytorch_grad_cam.layer_search.LayerChoice`), or None when the target layers
            were given.
        diagnostics: what the last call found wrong with its maps, per image and layer (a list
            of :class:`~pytorch_grad_cam.diagnostics.Finding`; empty when every map is fine).
        outputs: the model output of the view last explained (detached).
        layer_outputs: per target layer, its raw output (before ``reshape_transform``, detached) in
            that same forward; set before :meth:`layer_maps` runs, for methods that work on the
            layer's own output (AblationCAM reuses it instead of running the model again).
    """

    #: Whether the method needs the gradients of the target score.
    uses_gradients: ClassVar[bool] = True
    #: Whether the method explains a target (EigenCAM does not).
    uses_targets: ClassVar[bool] = True
    #: Whether the map is always the first principal component of the weighted activations.
    always_eigen: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        target_layers: nn.Module | Sequence[nn.Module] | None = None,
        use_cuda: bool | ReshapeTransform | None = None,
        reshape_transform: ReshapeTransform | None = None,
        *,
        target_layer: nn.Module | None = None,
        device: torch.device | str | None = None,
        layer_call: int | Sequence[int | None] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        model = network_of(model)  # an ultralytics YOLO object: its network, never its predictor
        if callable(use_cuda) and not isinstance(use_cuda, bool):
            if reshape_transform is not None:
                raise TypeError("reshape_transform given twice (third positional argument and keyword)")
            use_cuda, reshape_transform = None, use_cuda
        if reshape_transform is not None and not callable(reshape_transform):
            raise TypeError(f"reshape_transform must be callable; got {type(reshape_transform).__name__}")
        self.auto_target_layers = target_layers is None and target_layer is None
        if self.auto_target_layers and layer_call is not None:
            raise TypeError(
                "layer_call chooses a call of a target layer you give; the automatic choice only "
                "picks layers that run once: pass target_layers=[...] with layer_call"
            )
        self.target_layers = [] if self.auto_target_layers else as_target_layers(target_layers, target_layer)
        check_model_runs_eagerly(model, self.target_layers)
        # checked again per call, against the target layers then (they may be found later)
        self.layer_call = as_layer_calls(layer_call, len(self.target_layers) or None)
        self.reshape_transform = reshape_transform
        self._user_reshape_transform = reshape_transform
        self.layer_choice: LayerChoice | None = None
        self.diagnostics: list[Finding] = []
        self.device = resolve_device(use_cuda, device)
        if self.device is not None:
            check_model_has_data(model)
            model.to(self.device)
        self.model = model
        self.outputs: Any = None
        self.layer_outputs: Sequence[Any] = ()

    # -- the part a method defines ------------------------------------------------------------

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        """The weights of one target layer's activations.

        Args:
            input_tensor: ``(B, C_in, *S)`` the input on the model's device.
            target_layer: the layer.
            targets: one target per image (None for methods with ``uses_targets = False``).
            activations: ``(B, C, *s)`` float32.
            grads: ``(B, C, *s)`` float32 gradients of the summed target scores, or None for
                gradient-free methods.

        Returns:
            ``(B, C)`` channel weights or ``(B, C, *s)`` per-position weights.
        """
        raise NotImplementedError

    def get_cam_image(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
        eigen_smooth: bool = False,
    ) -> torch.Tensor:
        """One layer's raw map ``(B, *s)``: the weighted channel sum, or its first principal component."""
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        if eigen_smooth or self.always_eigen:
            return CF.first_principal_component(CF.expand_weights(weights, activations) * activations)
        return CF.weighted_sum(weights, activations)

    # -- orchestration ------------------------------------------------------------------------

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        *,
        target_category: Sequence[int] | int | None = None,
    ) -> np.ndarray:
        """Compute the CAMs of a batch.

        Args:
            input_tensor: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` floating images.
            targets: one target per image (callables such as ``ClassifierOutputTarget(k)``, or
                int class indices), an int for the same class in every image, or None for each
                image's top-scoring class.
            aug_smooth: average over 6 test-time views (horizontal flip x scale 0.9/1.0/1.1).
            eigen_smooth: reduce the weighted activations by their first principal component.
            target_category: the seed's name for ``targets`` (an int, a list of ints, or None).

        Returns:
            ``(B, H, W)`` (or ``(B, D, H, W)``) float32 maps in [0, 1].
        """
        if target_category is not None:
            if targets is not None:
                raise TypeError("pass either targets=... or target_category=..., not both")
            targets = target_category
        for name, flag in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False; got {flag!r}")
        input_tensor = check_input_tensor(input_tensor, signals=True)
        resolved = as_targets(targets, input_tensor.shape[0])
        unbind_detection_targets(resolved)  # detection targets match their boxes again on this input
        if aug_smooth:
            refuse_aug_smooth(self.model, resolved)
        device, dtype = model_device_and_dtype(self.model)
        if self.device is not None:
            device = self.device
        input_tensor = input_tensor.to(device=device, dtype=dtype or input_tensor.dtype)
        check_model_runs_eagerly(self.model, self.target_layers)
        if self.uses_gradients:
            check_model_differentiable(self.model, type(self).__name__)
        self.diagnostics = []
        requested = tensor_result_requested()
        precision = without_autocast(input_tensor.device)  # the float model's CAM, under autocast too
        with requested as as_tensor, torch.inference_mode(False), model_in_eval_mode(self.model), precision:
            if self.auto_target_layers:
                self.choose_target_layers(input_tensor, resolved)
            if aug_smooth:
                cams = self._augmented_cams(input_tensor, resolved, eigen_smooth)
            else:
                cams, _ = self._cams(input_tensor, resolved, eigen_smooth)
        warn_findings(self.diagnostics)
        cams = cams.detach().float()
        return cams if as_tensor else cams.cpu().numpy()  # a tensor for utils.tensor_result.cam_maps

    def choose_target_layers(self, input_tensor: torch.Tensor, targets: list[Target] | None) -> None:
        """Set ``target_layers``/``reshape_transform``/``layer_choice`` from
        :func:`~pytorch_grad_cam.layer_search.automatic_layers` (a ``reshape_transform`` the user
        gave is kept)."""
        layers, transform, self.layer_choice = automatic_layers(self.model, input_tensor, targets)
        self.target_layers = layers
        user = self._user_reshape_transform
        self.reshape_transform = user if user is not None else transform

    def _augmented_cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> torch.Tensor:
        total = None
        outputs = None
        for flip, factor in AUG_SMOOTH_VIEWS:
            view = input_tensor * factor
            if flip:
                view = view.flip(-1)
            cams, targets = self._cams(view, targets, eigen_smooth)
            if outputs is None:
                outputs = self.outputs
            if flip:
                cams = cams.flip(-1)
            total = cams if total is None else total + cams
        self.outputs = outputs
        return total / len(AUG_SMOOTH_VIEWS)

    def _cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> tuple[torch.Tensor, list[Target] | None]:
        """One view: capture, targets, gradients, per-layer maps, combination.

        A method whose whole pipeline differs (FullGrad: gradients down to the input, its own
        combination of maps) overrides this method; the others override the smaller hooks
        :meth:`differentiate`, :meth:`layer_maps`, :meth:`get_cam_image` or :meth:`get_cam_weights`.

        Returns:
            ``(B, *input spatial)`` maps in [0, 1], and the targets used (resolved when None).
        """
        view = self.run_view(
            input_tensor, targets, differentiate=self.differentiate if self.uses_gradients else None
        )
        self.outputs = view.outputs
        self.layer_outputs = view.layer_outputs
        maps = self.layer_maps(input_tensor, view.targets, view.activations, view.gradients, eigen_smooth)
        size = input_tensor.shape[2:]
        findings = diagnose_maps(
            self.model,
            self.target_layers,
            type(self),
            input_tensor,
            maps,
            view.activations,
            view.gradients,
            view.targets,
        )
        combined = CF.aggregate_layers([CF.layer_cam_to_unit(cam, size) for cam in maps])
        if findings and len(maps) > 1:  # another layer's map may fill a blank one
            shown = blank_images(combined)
            findings = [dataclasses.replace(f, in_result=bool(shown[f.image])) for f in findings]
        self.diagnostics += [f for f in findings if f not in self.diagnostics]
        return combined, view.targets

    def run_view(
        self,
        input_tensor: torch.Tensor,
        targets: list[Target] | None,
        *,
        differentiate: Callable[[ActivationsAndGradients, torch.Tensor], list[Any]] | None,
    ) -> CapturedView:
        """Run the model once on ``input_tensor`` and collect what the target layers saw.

        The forward runs under ``torch.no_grad()``; with ``differentiate`` the target layers'
        outputs start an autograd graph (see :mod:`~pytorch_grad_cam.activations_and_gradients`)
        and ``differentiate(capture, summed_target_scores)`` gives their gradients.

        Args:
            input_tensor: ``(B, C, *S)`` on the model's device.
            targets: one target per image, or None for :meth:`default_targets` of this output
                (methods with ``uses_targets = False`` keep None).
            differentiate: :meth:`differentiate` or :meth:`ActivationsAndGradients.gradients`;
                None for a gradient-free view.

        Returns:
            the detached outputs, the targets, and per target layer the ``(B, C, *s)`` float32
            activations and gradients (None without ``differentiate``, or where it gave None).
        """
        capture = ActivationsAndGradients(
            self.model,
            self.target_layers,
            track_gradients=differentiate is not None,
            calls=self.layer_calls(),
        )
        fast = gradient_forward(
            self.model,
            self.target_layers,
            track_gradients=differentiate is not None,
            scores_only=reads_scores_only(targets),
        )
        with capture, fast, torch.no_grad():
            try:
                outputs = self.model(input_tensor)
            except (RuntimeError, ValueError) as error:
                if input_tensor.dim() != 3:
                    raise
                raise rejected_input(input_tensor, error) from error
        detached = detach_outputs(outputs)
        check_finite_output(detached, input_tensor.shape[0])
        check_reached(capture, self.target_layers, self.layer_calls())
        activations = [
            to_spatial(raw, index, input_tensor, "output", self.reshape_transform)
            for index, raw in enumerate(capture.captured)
        ]
        if self.uses_targets and targets is None:
            targets = default_detection_targets(self.model, detached, input_tensor)
            if targets is None:
                targets = self.default_targets(detached)
        if targets is not None:
            bind_detection_targets(targets, detached, input_tensor, self.model)
        gradients: list[torch.Tensor | None] = [None] * len(activations)
        if differentiate is not None:
            with torch.enable_grad():
                scores = target_scores(targets, outputs, input_tensor.shape[0])
            if not scores.requires_grad:
                warnings.warn(
                    "the target scores do not depend on the target layers' outputs; the gradients and "
                    "the gradient CAMs are all zero",
                    stacklevel=4,
                )
            gradients = [
                None
                if raw is None
                else to_spatial(raw, index, input_tensor, "gradient", self.reshape_transform)
                for index, raw in enumerate(differentiate(capture, scores.sum()))
            ]
            check_finite_output(gradients, input_tensor.shape[0], "the target scores' gradient")
        raw_outputs = [detach_outputs(raw) for raw in capture.captured]
        return CapturedView(detached, targets, activations, gradients, raw_outputs)

    def differentiate(self, capture: ActivationsAndGradients, score: torch.Tensor) -> list[Any]:
        """The per-layer gradients a gradient method uses: by default ``d score / d output``.

        Args:
            capture: the capture of this view, its outputs in the autograd graph.
            score: the summed target scores of the batch.

        Returns:
            per target layer, a tensor (or the layer's structure of tensors) shaped like the
            layer's raw output, or None where the method needs none.
        """
        return capture.gradients(score)

    def layer_maps(
        self,
        input_tensor: torch.Tensor,
        targets: list[Target] | None,
        activations: list[torch.Tensor],
        gradients: list[torch.Tensor | None],
        eigen_smooth: bool,
    ) -> list[torch.Tensor]:
        """Each target layer's raw map ``(B, *s)``, before ReLU and scaling.

        By default :meth:`get_cam_image` of each layer on its own; a method that needs all
        layers at once (e.g. extra forward passes shared by the layers) overrides this.
        """
        return [
            self.get_cam_image(input_tensor, layer, targets, acts, grads, eigen_smooth)
            for layer, acts, grads in zip(self.target_layers, activations, gradients)
        ]

    def default_targets(self, outputs: Any) -> list[Target]:
        """Each image's top-scoring class (the argmax of the classifier output)."""
        logits = classifier_logits(outputs)
        return [ClassifierOutputTarget(int(k)) for k in logits.argmax(dim=-1).tolist()]

    def layer_calls(self) -> list[int | None]:
        """Per target layer, the call to explain (``layer_call``; None: the layer must run once)."""
        calls = as_layer_calls(self.layer_call, len(self.target_layers))
        return calls if isinstance(calls, list) else [calls] * len(self.target_layers)
