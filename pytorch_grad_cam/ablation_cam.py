"""AblationCAM with the network before the target layer run once per batch of ablations."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam import perturbation as P
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.ablation_passes import PER_CHANNEL_POOLS, is_per_channel_pool
from pytorch_grad_cam.ablation_routes import (
    CACHED,
    FULL,
    POOLED,
    PREFIX,
    SMALL,
    SMALL_INPUT_DIVISORS,
    AblationSettings,
    ImageRun,
    LayerRoutes,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.outputs import map_tensors
from pytorch_grad_cam.utils.progress import check_progress, progress_bar
from pytorch_grad_cam.utils.target_scores import target_scores
from pytorch_grad_cam.utils.validation import Target, positive_int

#: The method, and the names this module held before the routes and passes moved out (still importable).
__all__ = [
    "CACHED",
    "FULL",
    "PER_CHANNEL_POOLS",
    "POOLED",
    "PREFIX",
    "SMALL",
    "SMALL_INPUT_DIVISORS",
    "AblationCAM",
    "is_per_channel_pool",
]


class AblationCAM(BaseCAM):
    """Ablation-CAM: how much the target score drops when one activation channel is switched off.

    Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf

    ``y`` is the target score, ``y_k`` the score with channel ``k`` of the target layer's output
    ablated: set to 0 when the image's activations there are all ``>= 0``, else to ``min - 1e7``.
    ``w_k = (y - y_k) / y`` (``y - y_k`` where ``y == 0``, see
    :func:`~pytorch_grad_cam.perturbation.relative_score_drop`); ``CAM = relu(sum_k w_k A_k)``.
    A channel that is already all 0 in a non-negative output is not run: ablating it changes
    nothing, so ``y_k = y`` and ``w_k = 0`` (with the default ablation layer and no
    ``reshape_transform``; :func:`~pytorch_grad_cam.perturbation.unchanged_by_ablation`).

    How it runs: the network before the target layer runs once per image, and only the rest of it
    runs on batches of ablated copies of the layer's output. A forward hook on the target layer
    replaces the layer's output by ``batch_size`` copies of it, each with one channel ablated:

    1. The layer's output and the score ``y`` of each image are those of the forward that
       captured the activations (BaseCAM's ``layer_outputs`` and ``outputs``); a method that calls
       :meth:`get_cam_weights` without them gets them from a first pass on the image alone.
    2. The passes run the model on an empty batch (``image[:0]``): the network before the layer
       does no work, and the hook substitutes copies of the kept output. Each pass also scores one
       unablated copy; if it does not reproduce ``y``, or the model raises or does not return a
       row per copy (the rest of the network uses other tensors from before the layer, such as a
       residual), the layer's remaining passes run the model on the image alone (batch 1; the
       tensors that skip the layer broadcast from batch 1 against the batch of copies).
    2a. The pooled route: where the layer's output goes straight into a pooling module that works
       channel by channel (average or max pooling, :data:`PER_CHANNEL_POOLS`; torchvision's and
       timm's ResNets), a pooled copy with channel ``k`` ablated is the pool of the unablated
       output with channel ``k`` replaced by the pool of an ablated channel
       (:func:`~pytorch_grad_cam.perturbation.ablate_pooled`). The hook then substitutes the pool's
       output instead of the layer's: for resnet50's ``layer4[-1]`` that is 2048 values per copy
       instead of 2048x7x7, and a pass holds ``h*w / pooled size`` times ``batch_size`` copies (the
       same memory as ``batch_size`` copies of the layer's output). The route is taken only after
       it gave the same scores as the copies of step 2 on the first batch of ablations, and only
       with the default :class:`~pytorch_grad_cam.ablation_layer.AblationLayer` ablating channel
       axis 1 (no ``reshape_transform`` that moves the channels); :attr:`routes` says which route ran.
    3. If a batch-1 pass fails in the same ways (a model that reshapes by its input's batch size
       after the layer, ``x.view(inputs.size(0), -1)``, as EfficientNet-PyTorch does), the passes
       run the model on one zero image per copy, of the smallest of 1/16, 1/8, 1/4 or 1/2 of the
       input's size that the model runs with: the network before the layer does little work, and
       the hook substitutes the copies of the kept output. Checked by the unablated copy as in
       step 2.
    4. If that fails too (the rest of the network also depends on the input's size), the method
       warns, sets :attr:`used_fallback` and runs the whole network on ``batch_size`` repeats of the
       image instead (the hook ablates copy ``i`` of the layer's output): slower, and always correct.

    The model is left untouched either way. The routes and the checks between them live in
    :mod:`pytorch_grad_cam.ablation_routes`, the hooked passes in
    :mod:`pytorch_grad_cam.ablation_passes`. Running out of memory (``torch.OutOfMemoryError``,
    ``torch.cuda.OutOfMemoryError``, ``MemoryError``, or the CPU allocator's untyped error) is
    raised, not taken for a route that does not work: lower ``batch_size``.

    Args:
        model, target_layers, use_cuda, reshape_transform, target_layer, device, layer_call: as for
            :class:`~pytorch_grad_cam.base_cam.BaseCAM`. As in 1.5.x, an ablation layer given as
            the fourth positional argument is taken as ``ablation_layer``.
        batch_size: ablated copies of the layer's output per forward pass (also
            ``cam.batch_size = 64``); the pooled route puts as many pooled copies in a pass as fit
            in the same memory. Peak memory grows with it, not with the number of channels.
            None (default): the input's batch size, so a pass holds no more copies than the
            call's own forward held images
            (:func:`~pytorch_grad_cam.perturbation.inputs_per_pass`).
        ratio_channels_to_ablate: in (0, 1]. Below 1, only the ``max(1, int(ratio * C))`` channels
            with the largest mean absolute activation are ablated; the others get weight 0.
        ablation_layer: how a channel is ablated (an
            :class:`~pytorch_grad_cam.ablation_layer.AblationLayer`); default: the channel the
            ``reshape_transform`` maps to channel ``k`` (see
            :func:`~pytorch_grad_cam.perturbation.channel_layout`).
        progress: show a tqdm bar on stderr; None (default) shows it only when stderr is a terminal.

    Attributes:
        used_fallback: whether the last call had to run the whole network per batch of ablations.
        routes: per target layer, how its ablation passes ran in the last call: ``"pooled"``,
            ``"cached"`` (steps 2a and 2), ``"prefix"`` (batch 1), ``"small"`` (step 3) or
            ``"full"`` (the fallback).
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        target_layers: nn.Module | Sequence[nn.Module] | None = None,
        use_cuda: bool | Callable[[Any], torch.Tensor] | None = None,
        reshape_transform: Callable[[Any], torch.Tensor] | AblationLayer | None = None,
        batch_size: int | None = None,
        ratio_channels_to_ablate: float = 1.0,
        *,
        ablation_layer: AblationLayer | None = None,
        target_layer: nn.Module | None = None,
        device: torch.device | str | None = None,
        layer_call: int | Sequence[int | None] | None = None,
        progress: bool | None = None,
    ) -> None:
        if isinstance(reshape_transform, AblationLayer):
            # 1.5.x order: (model, target_layers, reshape_transform, ablation_layer, batch_size, ratio)
            if ablation_layer is not None:
                raise TypeError("ablation_layer given twice (fourth positional argument and keyword)")
            ablation_layer, reshape_transform = reshape_transform, None
        if ablation_layer is not None and not isinstance(ablation_layer, AblationLayer):
            raise TypeError(
                "ablation_layer must be an AblationLayer (e.g. AblationLayerVit()); "
                f"got {type(ablation_layer).__name__}"
            )
        super().__init__(
            model,
            target_layers,
            use_cuda,
            reshape_transform,
            target_layer=target_layer,
            device=device,
            layer_call=layer_call,
        )
        self.batch_size = batch_size
        self.ratio_channels_to_ablate = ratio_channels_to_ablate
        self.ablation_layer = AblationLayer() if ablation_layer is None else ablation_layer
        self.progress = check_progress(progress)
        self.used_fallback = False
        self.routes: list[str | None] = []
        self._runs: dict[int, LayerRoutes] = {}

    @property
    def batch_size(self) -> int | None:
        """Ablated copies per forward pass; None: the input's batch size."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        self._batch_size = None if value is None else positive_int(value, "batch_size")

    @property
    def ratio_channels_to_ablate(self) -> float:
        """The fraction of channels ablated, in (0, 1]."""
        return self._ratio

    @ratio_channels_to_ablate.setter
    def ratio_channels_to_ablate(self, value: float) -> None:
        self._ratio = P.check_ratio(value)

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        *,
        target_category: Sequence[int] | int | None = None,
    ) -> np.ndarray:
        """As :meth:`BaseCAM.__call__`; also sets :attr:`used_fallback`."""
        self.used_fallback = False
        self.routes = [None] * len(self.target_layers)
        self._runs = {}
        try:
            return super().__call__(
                input_tensor, targets, aug_smooth, eigen_smooth, target_category=target_category
            )
        finally:
            self._runs = {}

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, channels = activations.shape[:2]
        index = next(i for i, layer in enumerate(self.target_layers) if layer is target_layer)
        per_pass = P.inputs_per_pass(self.batch_size, batch)
        settings = AblationSettings(self.model, self.ablation_layer, self.reshape_transform, per_pass)
        run = self._runs.get(id(target_layer))
        if run is None or run.channels != channels:
            run = LayerRoutes(settings, target_layer, index, channels, self.layer_calls()[index])
        run.settings = settings
        run.call = self.layer_calls()[index]
        run.has_layout = False  # found again from this view's output
        device = activations.device
        with torch.inference_mode():
            plans = self._plans(activations)
            captured = self._captured_output(index, activations)
            known = None if captured is None else target_scores(targets, self.outputs, batch).to(device)
            scores = torch.empty(batch, dtype=torch.float32, device=device)
            ablated = torch.empty(batch, channels, dtype=torch.float32, device=device)
            steps = sum(int(plan.numel()) for plan in plans)
            try:
                with progress_bar(steps, type(self).__name__, self.progress) as bar:
                    for i, plan in enumerate(plans):
                        image = ImageRun(input_tensor[i : i + 1], targets[i])
                        if captured is not None:
                            image.output = map_tensors(lambda t, i=i: t[i : i + 1], captured)
                            image.score = known[i]
                        found = run.image_scores(image, plan, bar.update).to(device)
                        scores[i] = found[0]
                        ablated[i] = found[0]
                        ablated[i, plan[1:]] = found[1:]
            finally:  # also when a pass raises after the fallback was taken
                self.used_fallback = self.used_fallback or run.used_fallback
            weights = P.relative_score_drop(scores, ablated)
        self._runs[id(target_layer)] = run
        if len(self.routes) != len(self.target_layers):
            self.routes = [None] * len(self.target_layers)
        self.routes[index] = run.route
        return weights.clone()

    def _plans(self, activations: torch.Tensor) -> list[torch.Tensor]:
        """Per image, ``-1`` (the unablated copy) and the channels to ablate: those the ratio keeps,
        less those ablating would not change (only known without a ``reshape_transform``, where the
        activations are every element of the layer's output, and with the default ablation)."""
        skip_unchanged = self.reshape_transform is None and type(self.ablation_layer) is AblationLayer
        plans = []
        for sample in activations:
            chosen = P.channels_to_ablate(sample, self.ratio_channels_to_ablate)
            if skip_unchanged:
                chosen = chosen[~P.unchanged_by_ablation(sample)[chosen]]
            plans.append(torch.cat([chosen.new_full((1,), -1), chosen]))
        return plans

    def _captured_output(self, index: int, activations: torch.Tensor) -> Any:
        """The layer's raw output from BaseCAM's forward, if it is what ``activations`` came from."""
        if index >= len(self.layer_outputs):
            return None
        raw = self.layer_outputs[index]
        spatial = raw if self.reshape_transform is None else self.reshape_transform(raw)
        if not isinstance(spatial, torch.Tensor) or spatial.shape != activations.shape:
            return None
        return raw if torch.equal(spatial.float(), activations) else None
