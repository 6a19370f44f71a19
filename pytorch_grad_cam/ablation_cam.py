"""AblationCAM with the network before the target layer run once per batch of ablations."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from pytorch_grad_cam._ablation.routes import (
    AblationSettings,
    ImageRun,
    LayerRoutes,
)
from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam._core.outputs import map_tensors
from pytorch_grad_cam._core.progress import check_progress, progress_bar
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target, positive_int
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.base_cam import BaseCAM


class AblationCAM(BaseCAM):
    """Ablation-CAM: how much the target score drops when one activation channel is switched off.

    Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf

    ``y`` is the target score, ``y_k`` the score with channel ``k`` of the target layer's output
    ablated: set to 0 when the image's activations there are all ``>= 0``, else to ``min - 1e7``.
    ``w_k = (y - y_k) / y`` (``y - y_k`` where ``y == 0``, see
    :func:`~pytorch_grad_cam._core.perturbation.relative_score_drop`); ``CAM = relu(sum_k w_k A_k)``.
    A channel that is already all 0 in a non-negative output is not run: ablating it changes
    nothing, so ``y_k = y`` and ``w_k = 0`` (with the default ablation layer and no
    ``reshape_transform``; :func:`~pytorch_grad_cam._core.perturbation.unchanged_by_ablation`).

    The network before the target layer runs once per image; only the rest of it runs on batches
    of ablated copies of the layer's output, by the fastest route that reproduces the unablated
    score (pooled, cached, batch 1, small zero images, or the whole network as a fallback).
    How and why: ``docs/design/ablation.md``; the engine is :mod:`pytorch_grad_cam._ablation`.
    Running out of memory is raised, not taken for a route that does not work: lower ``batch_size``.

    Args:
        model, target_layers, use_cuda, reshape_transform, **options: as for
            :class:`~pytorch_grad_cam.base_cam.BaseCAM`. As in 1.5.x, an ablation layer given as
            the fourth positional argument is taken as ``ablation_layer``.
        batch_size: ablated copies of the layer's output per forward pass (also
            ``cam.batch_size = 64``); the pooled route puts as many pooled copies in a pass as fit
            in the same memory. Peak memory grows with it, not with the number of channels.
        ratio_channels_to_ablate: in (0, 1]. Below 1, only the ``max(1, int(ratio * C))`` channels
            with the largest mean absolute activation are ablated; the others get weight 0.
        ablation_layer: how a channel is ablated (an
            :class:`~pytorch_grad_cam.ablation_layer.AblationLayer`); default: the channel the
            ``reshape_transform`` maps to channel ``k`` (see
            :func:`~pytorch_grad_cam._core.perturbation.channel_layout`).
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
        batch_size: int = 32,
        ratio_channels_to_ablate: float = 1.0,
        *,
        ablation_layer: AblationLayer | None = None,
        progress: bool | None = None,
        **options: Any,
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
        super().__init__(model, target_layers, use_cuda, reshape_transform, **options)
        self.batch_size = batch_size
        self.ratio_channels_to_ablate = ratio_channels_to_ablate
        self.ablation_layer = AblationLayer() if ablation_layer is None else ablation_layer
        self.progress = check_progress(progress)
        self.used_fallback = False
        self.routes: list[str | None] = []
        self._runs: dict[int, LayerRoutes] = {}

    @property
    def batch_size(self) -> int:
        """Ablated copies per forward pass."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = positive_int(value, "batch_size")

    @property
    def ratio_channels_to_ablate(self) -> float:
        """The fraction of channels ablated, in (0, 1]."""
        return self._ratio

    @ratio_channels_to_ablate.setter
    def ratio_channels_to_ablate(self, value: float) -> None:
        self._ratio = P.check_ratio(value)

    def start_call(self, *, eigen_smooth: bool) -> None:
        self.used_fallback = False
        self.routes = [None] * len(self.target_layers)
        self._runs = {}

    def end_call(self) -> None:
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
        settings = AblationSettings(self.model, self.ablation_layer, self.reshape_transform, self.batch_size)
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
