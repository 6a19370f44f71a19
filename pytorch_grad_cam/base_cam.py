"""BaseCAM: the orchestration every CAM method shares.

A method subclasses :class:`BaseCAM` and says only how channel weights are computed
(:meth:`BaseCAM.get_cam_weights`). BaseCAM runs the capture, picks targets, differentiates,
reduces the weighted activations (channel sum or first principal component), scales, resizes,
combines layers and applies test-time augmentation.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.diagnostics import Finding, warn_findings
from pytorch_grad_cam._core.first_forward import SharedFirstForward
from pytorch_grad_cam._core.frames_first import FramesFirst, frames_first_maps, reads_frames_first
from pytorch_grad_cam._core.inputs import is_several
from pytorch_grad_cam._core.modes import model_in_eval_mode, without_autocast
from pytorch_grad_cam._core.seam import PLAIN, choose_seam, network_of
from pytorch_grad_cam._core.several_inputs import as_numpy, several_input_maps
from pytorch_grad_cam._core.target_scores import top_class_targets
from pytorch_grad_cam._core.validation import (
    Target,
    as_target_layers,
    as_targets,
    check_call_options,
    check_input_tensor,
    check_model_differentiable,
    check_model_has_data,
    check_model_runs_eagerly,
    model_device_and_dtype,
    resolve_device,
)
from pytorch_grad_cam._core.views import CapturedView, augmented_maps, capture_view, diagnosed_maps
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients, as_layer_calls
from pytorch_grad_cam.layer_search import LayerChoice, find_target_layer

ReshapeTransform = Callable[[Any], torch.Tensor]


class BaseCAM:
    """Base class of the CAM methods.

    Args:
        model: the network. It is left exactly as it was (modes, hooks, ``requires_grad``,
            ``.grad``), except that ``use_cuda=True`` or ``device=`` move it, as asked.
        target_layers: the modules to explain, e.g. ``[model.layer4[-1]]`` (or one module); several
            give the mean of their maps. Omitted: chosen per call by
            :func:`~pytorch_grad_cam.layer_search.find_target_layer` (see ``layer_choice``).
        use_cuda: the original API's flag: move the model and inputs to CUDA. As the third positional
            argument a callable is taken as ``reshape_transform`` (the 1.5.x order).
        reshape_transform: maps a target layer's output (and its gradient) to ``(B, C, *grid)``,
            e.g. a transformer's tokens; kept with a chosen layer.
        target_layer: the original API's spelling of a single target layer.
        device: run on this device (the model is moved there). Default: the model's device.
        layer_call: which call of a target layer run more than once per forward to explain (a
            0-based index, or one per layer); by default each must run once (else a ValueError).

    A method sets ``uses_gradients``/``uses_targets``/``always_eigen`` and implements
    :meth:`get_cam_weights`; it may override :meth:`get_cam_image`, :meth:`layer_maps`,
    :meth:`differentiate`, :meth:`default_targets`, the per-call hooks, or ``_cams``.

    Attributes:
        layer_choice: the automatic choice of the last call (a
            :class:`~pytorch_grad_cam.layer_search.LayerChoice`), or None when the target layers
            were given.
        diagnostics: what the last call found wrong with its maps, per image and layer (a list
            of :class:`~pytorch_grad_cam._core.diagnostics.Finding`; empty when every map is fine).
        detection_fast_paths: whether a detector's gradient forward may take a fast path (True;
            False runs the plain forward, which gives the same gradients with more work).
        seam: what the last call needed of the detection package
            (:func:`~pytorch_grad_cam._core.seam.choose_seam`; ``PLAIN`` for a classifier).
        outputs: the model output of the view last explained (detached).
        layer_outputs: per target layer, its raw output in that forward (detached; AblationCAM
            reuses it instead of running the model again).
    """

    #: Whether the method needs the gradients of the target score.
    uses_gradients: ClassVar[bool] = True
    #: Whether the method explains a target (EigenCAM does not).
    uses_targets: ClassVar[bool] = True
    #: Whether the map is always the first principal component of the weighted activations.
    always_eigen: ClassVar[bool] = False
    #: Whether a call may pass several inputs (docs/multi-input.md): not for a method that perturbs
    #: or re-runs the image, which the model's other inputs would not follow.
    several_inputs: ClassVar[bool] = False

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
        #: per image input, the automatic choice of the last call with several inputs
        self.layer_choices: dict[Any, LayerChoice] = {}
        self._several_cache: dict[Any, Any] = {}
        self.diagnostics: list[Finding] = []
        self.device = resolve_device(use_cuda, device)
        if self.device is not None:
            check_model_has_data(model)
            model.to(self.device)
        self.model = model
        self.outputs: Any = None
        self.layer_outputs: Sequence[Any] = ()
        #: whether a detector's gradient forward may take a fast path (the same gradients, less work)
        self.detection_fast_paths = True
        #: the seam of the last call (:func:`~pytorch_grad_cam._core.seam.choose_seam`)
        self.seam = PLAIN
        self._in_call = False
        #: a one-image call's forward lent to the layer search, and the view it left (per call)
        self._first_forward: SharedFirstForward | None = None
        self._first_view: CapturedView | None = None
        #: the model read with its clips channels first, for inputs given frames first
        self._frames_first: FramesFirst | None = None

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
        **options: Any,
    ) -> np.ndarray:
        """Compute the CAMs of a batch, as numpy.

        Args:
            input_tensor: ``(B, C, H, W)`` or ``(B, C, D, H, W)`` floating images.
            targets: one target per image (callables such as ``ClassifierOutputTarget(k)``, or
                int class indices), an int for the same class in every image, or None for each
                image's top-scoring class.
            aug_smooth: average over 6 test-time views (horizontal flip x scale 0.9/1.0/1.1).
            eigen_smooth: reduce the weighted activations by their first principal component.
            **options: ``target_category`` (the original API's name for ``targets``: an int, a
                list of ints, or None), and a method's own call options (FinerCAM's ``alpha``, ...).

        Returns:
            ``(B, H, W)`` (or ``(B, D, H, W)``) float32 maps in [0, 1]. With several inputs (a
            tuple/list or dict ``input_tensor``, docs/multi-input.md): the same structure, a map per
            explained image input (None, or no key, for the others).
        """
        if is_several(input_tensor):
            return as_numpy(self.compute(input_tensor, targets, aug_smooth, eigen_smooth, **options))
        maps = self._maps(input_tensor, targets, aug_smooth, eigen_smooth, **options)
        warn_findings(self.diagnostics)
        return maps.cpu().numpy()

    def compute(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        **options: Any,
    ) -> torch.Tensor:
        """As :meth:`__call__`, the maps as a float32 tensor on the device they were computed on
        (for code that goes on computing in torch: SESS, RefineCAM, the dataset runner)."""
        if is_several(input_tensor):
            maps = several_input_maps(self, input_tensor, targets, aug_smooth, eigen_smooth, **options)
            warn_findings(self.diagnostics)
            return maps
        maps = self._maps(input_tensor, targets, aug_smooth, eigen_smooth, **options)
        warn_findings(self.diagnostics)
        return maps

    def start_call(self, *, eigen_smooth: bool) -> None:
        """Called at the start of every call: a method resets what it keeps per call here."""

    def end_call(self) -> None:
        """Called at the end of every call, also after an error: a method drops per-call state."""

    def _maps(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None,
        aug_smooth: bool,
        eigen_smooth: bool,
        *,
        target_category: Sequence[int] | int | None = None,
    ) -> torch.Tensor:
        """One call: checks, the layer choice, the views; ``(B, *spatial)`` float32 maps (a clip given
        frames first, ``(B, T, C, H, W)``, is read as ``(B, C, T, H, W)``: ``_core/frames_first.py``)."""
        if isinstance(input_tensor, torch.Tensor) and reads_frames_first(self.model, input_tensor):
            return frames_first_maps(
                self,
                input_tensor,
                # this class's body, not the subclass's _maps again (FinerCAM's would reset its
                # call options to their defaults)
                lambda clip: BaseCAM._maps(
                    self, clip, targets, aug_smooth, eigen_smooth, target_category=target_category
                ),
            )
        targets = check_call_options(
            targets, target_category, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth
        )
        input_tensor = check_input_tensor(input_tensor, signals=True)
        resolved = as_targets(targets, input_tensor.shape[0])
        self.seam = choose_seam(self.model, resolved, fast_paths=self.detection_fast_paths)
        self.seam.start(self.model, resolved, aug_smooth=aug_smooth)
        device, dtype = model_device_and_dtype(self.model)
        if self.device is not None:
            device = self.device
        input_tensor = input_tensor.to(device=device, dtype=dtype or input_tensor.dtype)
        check_model_runs_eagerly(self.model, self.target_layers)
        if self.uses_gradients:
            check_model_differentiable(self.model, type(self).__name__)
        self.diagnostics = []
        self._in_call = True
        self.start_call(eigen_smooth=eigen_smooth)
        try:
            precision = without_autocast(input_tensor.device)  # the float model's CAM, under autocast too
            with torch.inference_mode(False), model_in_eval_mode(self.model), precision:
                if self.auto_target_layers:
                    self._first_forward = self._lendable_forward(input_tensor, resolved, aug_smooth)
                    self.choose_target_layers(input_tensor, resolved)
                if aug_smooth:
                    cams = self._augmented_cams(input_tensor, resolved, eigen_smooth)
                else:
                    cams, _ = self._cams(input_tensor, resolved, eigen_smooth)
        finally:
            self._in_call = False
            self._first_forward = self._first_view = None
            self.end_call()
        return cams.detach().float()

    def choose_target_layers(self, input_tensor: torch.Tensor, targets: list[Target] | None) -> None:
        """Set ``target_layers``/``reshape_transform``/``layer_choice`` from
        :func:`~pytorch_grad_cam.layer_search.find_target_layer` (a ``reshape_transform`` the user
        gave is kept)."""
        lent = self._first_forward
        self.layer_choice = find_target_layer(self.model, input_tensor, targets, first_forward=lent)
        self.target_layers = self.layer_choice.layers
        user = self._user_reshape_transform
        self.reshape_transform = user if user is not None else self.layer_choice.reshape_transform
        self._first_view = (
            None if lent is None else lent.view(self.layer_choice.layer, self.reshape_transform)
        )

    def _lendable_forward(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, aug_smooth: bool
    ) -> SharedFirstForward | None:
        """The call's forward to lend the layer search (:mod:`pytorch_grad_cam._core.first_forward`),
        or None: only a one-image call of a gradient method whose view is the plain one (this class's
        capture, score, gradients and default targets), with no ``aug_smooth``, ``layer_call`` or
        detector (with the choice cached, the search runs no forward and the lent one leaves no view)."""
        cls = type(self)
        plain = (
            cls._cams is BaseCAM._cams
            and cls.run_view is BaseCAM.run_view
            and cls.differentiate is BaseCAM.differentiate
            and cls.default_targets is BaseCAM.default_targets
        )
        if not (plain and self.uses_gradients and self.uses_targets) or aug_smooth:
            return None
        if input_tensor.shape[0] != 1 or self.layer_call is not None or self.seam is not PLAIN:
            return None
        return SharedFirstForward(
            self.model, input_tensor, targets, seam=self.seam, default_targets=self.default_targets
        )

    def _augmented_cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> torch.Tensor:
        outputs = []  # the identity view's output is the call's

        def one_view(view: torch.Tensor) -> torch.Tensor:
            nonlocal targets  # the identity view's targets are every view's
            cams, targets = self._cams(view, targets, eigen_smooth)
            outputs.append(self.outputs)
            return cams

        total = augmented_maps(one_view, input_tensor)
        self.outputs = outputs[0]
        return total

    def _cams(
        self, input_tensor: torch.Tensor, targets: list[Target] | None, eigen_smooth: bool
    ) -> tuple[torch.Tensor, list[Target] | None]:
        """One view: capture, targets, gradients, per-layer maps, combination (FullGrad overrides it).

        Returns:
            ``(B, *input spatial)`` maps in [0, 1], and the targets used (resolved when None).
        """
        view, self._first_view = self._first_view, None  # the forward lent to the layer search
        if view is None:
            view = self.run_view(
                input_tensor, targets, differentiate=self.differentiate if self.uses_gradients else None
            )
        self.outputs = view.outputs
        self.layer_outputs = view.layer_outputs
        maps = self.layer_maps(input_tensor, view.targets, view.activations, view.gradients, eigen_smooth)
        combined, findings = diagnosed_maps(
            self.model, self.target_layers, type(self), input_tensor, maps, view
        )
        self.diagnostics += [f for f in findings if f not in self.diagnostics]
        return combined, view.targets

    def run_view(
        self,
        input_tensor: torch.Tensor,
        targets: list[Target] | None,
        *,
        differentiate: Callable[[ActivationsAndGradients, torch.Tensor], list[Any]] | None,
    ) -> CapturedView:
        """Run the model once on ``input_tensor`` and collect what the target layers saw: see
        :func:`~pytorch_grad_cam._core.views.capture_view`, whose ``targets`` default to this output's
        :meth:`default_targets` (None for ``uses_targets = False``) and ``differentiate`` is
        :meth:`differentiate`, :meth:`ActivationsAndGradients.gradients` or None (no gradients)."""
        calls = self.layer_calls()
        if not self._in_call:  # a view run on its own: its own seam
            self.seam = choose_seam(self.model, targets, fast_paths=self.detection_fast_paths)
        return capture_view(
            self.model,
            self.target_layers,
            input_tensor,
            targets,
            calls=calls,
            seam=self.seam,
            reshape_transform=self.reshape_transform,
            default_targets=self.default_targets if self.uses_targets else None,
            differentiate=differentiate,
        )

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
        """Each image's top-scoring class (the argmax of the classifier output); on a segmenter's
        ``(B, K, H, W)`` output, its most frequent predicted class over its own predicted mask."""
        return top_class_targets(outputs)

    def layer_calls(self) -> list[int | None]:
        """Per target layer, the call to explain (``layer_call``; None: the layer must run once)."""
        calls = as_layer_calls(self.layer_call, len(self.target_layers))
        return calls if isinstance(calls, list) else [calls] * len(self.target_layers)
