"""AblationCAM with the network before the target layer run once per batch of ablations."""

from __future__ import annotations

import dataclasses
import threading
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam import perturbation as P
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.outputs import target_scores, tensors_in
from pytorch_grad_cam.utils.progress import check_progress, progress_bar
from pytorch_grad_cam.utils.validation import Target


@dataclasses.dataclass
class _LayerRun:
    """What one layer's ablation passes share within a call."""

    layer: nn.Module
    index: int
    channels: int
    fast: bool = True
    layout: P.ChannelLayout | None = None
    has_layout: bool = False
    hook_error: BaseException | None = None


class AblationCAM(BaseCAM):
    """Ablation-CAM: how much the target score drops when one activation channel is switched off.

    Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020,
    https://openaccess.thecvf.com/content_WACV_2020/papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.pdf

    ``y`` is the target score, ``y_k`` the score with channel ``k`` of the target layer's output
    ablated: set to 0 when the image's activations there are all ``>= 0``, else to ``min - 1e7``.
    ``w_k = (y - y_k) / y`` (``y - y_k`` where ``y == 0``, see
    :func:`~pytorch_grad_cam.perturbation.relative_score_drop`); ``CAM = relu(sum_k w_k A_k)``.

    How it runs: for each image, the model is called on that image alone while a forward hook on
    the target layer replaces the layer's output by ``batch_size`` copies of it, each with one
    channel ablated. The network before the target layer thus runs once per ``batch_size``
    ablations, at batch 1, and only the rest of it runs on the batch of copies (tensors that skip
    the layer, such as a residual, broadcast from batch 1). If the model's output then does not
    have the batch of copies, or the rest of the network raises, the method warns, sets
    :attr:`used_fallback` and, for that layer, runs the whole network on ``batch_size`` repeats of
    the image instead (the hook then ablates copy ``i`` of the layer's batch output): slower, and
    always correct. The model is left untouched either way.

    Args:
        model, target_layers, use_cuda, reshape_transform, target_layer, device: as for
            :class:`~pytorch_grad_cam.base_cam.BaseCAM`. As in 1.5.x, an ablation layer given as
            the fourth positional argument is taken as ``ablation_layer``.
        batch_size: ablated copies per forward pass (also ``cam.batch_size = 64``). Peak memory
            grows with it; the network before the layer runs ``ceil(C / batch_size)`` times per
            image.
        ratio_channels_to_ablate: in (0, 1]. Below 1, only the ``max(1, int(ratio * C))`` channels
            with the largest mean absolute activation are ablated; the others get weight 0.
        ablation_layer: how a channel is ablated (an
            :class:`~pytorch_grad_cam.ablation_layer.AblationLayer`); default: the channel the
            ``reshape_transform`` maps to channel ``k`` (see
            :func:`~pytorch_grad_cam.perturbation.channel_layout`).
        progress: show a tqdm bar on stderr; None (default) shows it only when stderr is a terminal.

    Attributes:
        used_fallback: whether the last call had to run the whole network per batch of ablations.
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
        target_layer: nn.Module | None = None,
        device: torch.device | str | None = None,
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
            model, target_layers, use_cuda, reshape_transform, target_layer=target_layer, device=device
        )
        self.batch_size = batch_size
        self.ratio_channels_to_ablate = ratio_channels_to_ablate
        self.ablation_layer = AblationLayer() if ablation_layer is None else ablation_layer
        self.progress = check_progress(progress)
        self.used_fallback = False
        self._slow_layers: set[int] = set()

    @property
    def batch_size(self) -> int:
        """Ablated copies per forward pass."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = P.check_batch_size(value)

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
        self._slow_layers = set()
        try:
            return super().__call__(
                input_tensor, targets, aug_smooth, eigen_smooth, target_category=target_category
            )
        finally:
            self._slow_layers = set()

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
        run = _LayerRun(target_layer, index, channels, fast=id(target_layer) not in self._slow_layers)
        device = activations.device
        with torch.inference_mode():
            plans = [
                torch.cat(
                    [
                        torch.full((1,), -1, dtype=torch.long, device=device),
                        P.channels_to_ablate(activations[i], self.ratio_channels_to_ablate),
                    ]
                )
                for i in range(batch)
            ]
            steps = sum(-(-plan.numel() // self.batch_size) for plan in plans)
            scores = torch.empty(batch, dtype=torch.float32, device=device)
            ablated = torch.empty(batch, channels, dtype=torch.float32, device=device)
            with progress_bar(steps, type(self).__name__, self.progress) as bar:
                for i, plan in enumerate(plans):
                    image = input_tensor[i : i + 1]
                    results = []
                    for start in range(0, plan.numel(), self.batch_size):
                        results.append(
                            self._ablation_scores(
                                run, image, targets[i], plan[start : start + self.batch_size]
                            )
                        )
                        bar.update(1)
                    found = torch.cat(results).to(device)
                    scores[i] = found[0]
                    ablated[i] = found[0]
                    ablated[i, plan[1:]] = found[1:]
            weights = P.relative_score_drop(scores, ablated)
        return weights.clone()

    def _ablation_scores(
        self, run: _LayerRun, image: torch.Tensor, target: Target, channels: torch.Tensor
    ) -> torch.Tensor:
        """Target scores of the copies ``channels`` (``-1``: unablated) of one image."""
        copies = int(channels.shape[0])
        if run.fast:
            try:
                outputs = self._ablated_forward(run, image, channels)
                if copies > 1:
                    found = [tuple(t.shape) for t in tensors_in(outputs)]
                    if not found or any(len(shape) == 0 or shape[0] != copies for shape in found):
                        raise RuntimeError(f"the model output has shapes {found}, not a batch of {copies}")
            except Exception as error:
                if error is run.hook_error:
                    raise
                run.fast = False
                self._slow_layers.add(id(run.layer))
                self.used_fallback = True
                warnings.warn(
                    f"AblationCAM: the network after target_layers[{run.index}] "
                    f"({type(run.layer).__name__}) does not run on a batch of ablated copies "
                    f"({type(error).__name__}: {error}); running the whole network on repeats of "
                    "the image instead (correct, slower)",
                    stacklevel=2,
                )
            else:
                return target_scores([target] * copies, outputs, copies)
        repeated = image.expand(copies, *image.shape[1:])
        outputs = self._ablated_forward(run, repeated, channels)
        return target_scores([target] * copies, outputs, copies)

    def _ablated_forward(self, run: _LayerRun, model_input: torch.Tensor, channels: torch.Tensor) -> Any:
        """Run the model with the target layer's output replaced by its ablated copies."""
        thread = threading.get_ident()
        fired = []

        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            if threading.get_ident() != thread:
                return None
            fired.append(True)
            try:
                if not run.has_layout:
                    run.layout = self.ablation_layer.layout(output, self.reshape_transform)
                    run.has_layout = True
                    if run.layout is not None and run.layout.channels != run.channels:
                        raise ValueError(
                            f"{type(self.ablation_layer).__name__} finds {run.layout.channels} channels in "
                            f"target_layers[{run.index}]'s output, but the CAM's activations have "
                            f"{run.channels}; check reshape_transform and ablation_layer"
                        )
                return self.ablation_layer(output, channels, run.layout)
            except Exception as error:
                run.hook_error = error
                raise

        handle = run.layer.register_forward_hook(hook)
        try:
            outputs = self.model(model_input)
        finally:
            handle.remove()
        if not fired:
            raise ValueError(f"target_layers[{run.index}] did not run in the ablation forward pass")
        return outputs
