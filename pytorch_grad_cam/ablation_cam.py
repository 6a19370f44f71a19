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
from pytorch_grad_cam.activations_and_gradients import check_layer_calls
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.outputs import map_tensors, target_scores, tensors_in
from pytorch_grad_cam.utils.progress import check_progress, progress_bar
from pytorch_grad_cam.utils.validation import Target

#: How the ablation passes of a layer run, fastest first (see :class:`AblationCAM`).
POOLED, CACHED, PREFIX, SMALL, FULL = "pooled", "cached", "prefix", "small", "full"

#: The small route's input: each spatial size divided by the first of these the model runs with
#: (at least 1 pixel).
SMALL_INPUT_DIVISORS = (16, 8, 4, 2)

#: Pooling modules that work channel by channel: where one of them takes the target layer's output,
#: the pooled route builds ablated copies of its (smaller) output instead of the layer's. Max pools
#: qualify only without ``return_indices``.
_AVG_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
)
_MAX_POOLS = (
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
)
PER_CHANNEL_POOLS: tuple[type[nn.Module], ...] = _AVG_POOLS + _MAX_POOLS


def is_per_channel_pool(module: nn.Module) -> bool:
    """Whether ``module`` is one of :data:`PER_CHANNEL_POOLS` returning a single tensor."""
    if isinstance(module, _MAX_POOLS):
        return not module.return_indices
    return isinstance(module, PER_CHANNEL_POOLS)


@dataclasses.dataclass
class _LayerRun:
    """What one layer's ablation passes share within a call."""

    layer: nn.Module
    index: int
    channels: int
    mode: str = CACHED
    layout: P.ChannelLayout | None = None
    has_layout: bool = False
    hook_error: BaseException | None = None
    #: the per-channel pool that the pooled route substitutes, once verified
    pool: nn.Module | None = None
    #: whether the pooled route was tried (it is tried once per layer and call)
    pool_decided: bool = False
    #: copies per pass, in units of ``batch_size`` (layer output size / pooled size on that route)
    pack: int = 1
    #: why the passes left the batch-1 route (for the fallback's warning)
    reason: BaseException | None = None
    #: the divisors of the input size the small route may still use (the first is the one that works)
    divisors: tuple[int, ...] = SMALL_INPUT_DIVISORS

    @property
    def route(self) -> str:
        return POOLED if self.mode == CACHED and self.pool is not None else self.mode


@dataclasses.dataclass
class _ImageRun:
    """One image's unablated layer output (batch 1) and target score, from its first pass."""

    image: torch.Tensor
    target: Target
    output: Any = None
    score: torch.Tensor | None = None
    #: ``(1, C, *p)`` the pool of ``output``, and of ``output`` with every channel ablated
    pooled: torch.Tensor | None = None
    pooled_ablated: torch.Tensor | None = None


class _NotABatch(Exception):
    """The model output does not have one row per ablated copy."""


def _out_of_memory(error: BaseException) -> bool:
    """An allocation failure (device or host): another route would only fail again, so it is raised."""
    message = str(error).lower()
    return isinstance(error, MemoryError) or "out of memory" in message or "can't allocate memory" in message


def _with_unablated(channels: torch.Tensor, checked: bool) -> torch.Tensor:
    """``channels`` with an unablated copy (``-1``) first, unless ``checked`` says it has one."""
    return channels if checked else torch.cat([channels.new_full((1,), -1), channels])


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

    The model is left untouched either way.

    Args:
        model, target_layers, use_cuda, reshape_transform, target_layer, device, layer_call: as for
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
        batch_size: int = 32,
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
        self._runs: dict[int, _LayerRun] = {}

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
        run = self._runs.get(id(target_layer))
        if run is None or run.channels != channels:
            run = _LayerRun(target_layer, index, channels)
        run.has_layout = False  # found again from this view's output
        device = activations.device
        # without a reshape_transform the activations are every element of the layer's output
        skip_unchanged = self.reshape_transform is None and type(self.ablation_layer) is AblationLayer
        with torch.inference_mode():
            plans = []
            for i in range(batch):
                chosen = P.channels_to_ablate(activations[i], self.ratio_channels_to_ablate)
                if skip_unchanged:
                    chosen = chosen[~P.unchanged_by_ablation(activations[i])[chosen]]
                plans.append(torch.cat([torch.full((1,), -1, dtype=torch.long, device=device), chosen]))
            steps = sum(int(plan.numel()) for plan in plans)
            captured = self._captured_output(index, activations)
            known = None if captured is None else target_scores(targets, self.outputs, batch).to(device)
            scores = torch.empty(batch, dtype=torch.float32, device=device)
            ablated = torch.empty(batch, channels, dtype=torch.float32, device=device)
            with progress_bar(steps, type(self).__name__, self.progress) as bar:
                for i, plan in enumerate(plans):
                    image = _ImageRun(input_tensor[i : i + 1], targets[i])
                    if captured is not None:
                        image.output = map_tensors(lambda t, i=i: t[i : i + 1], captured)
                        image.score = known[i]
                    found = []
                    start = 0
                    while start < plan.numel():
                        chunk = plan[start : start + self.batch_size * run.pack]
                        if image.score is None:
                            found.append(self._live_scores(run, image, chunk, checked=True).to(device))
                            image.score = found[0][0]
                        else:
                            found.append(
                                self._cached_scores(run, image, chunk, checked=start == 0).to(device)
                            )
                        start += int(chunk.numel())
                        bar.update(int(chunk.numel()))
                    found = torch.cat(found)
                    scores[i] = found[0]
                    ablated[i] = found[0]
                    ablated[i, plan[1:]] = found[1:]
            weights = P.relative_score_drop(scores, ablated)
        self._runs[id(target_layer)] = run
        if len(self.routes) != len(self.target_layers):
            self.routes = [None] * len(self.target_layers)
        self.routes[index] = run.route
        return weights.clone()

    def _captured_output(self, index: int, activations: torch.Tensor) -> Any:
        """The layer's raw output from BaseCAM's forward, if it is what ``activations`` came from."""
        if index >= len(self.layer_outputs):
            return None
        raw = self.layer_outputs[index]
        spatial = raw if self.reshape_transform is None else self.reshape_transform(raw)
        if not isinstance(spatial, torch.Tensor) or spatial.shape != activations.shape:
            return None
        return raw if torch.equal(spatial.float(), activations) else None

    def _cached_scores(
        self, run: _LayerRun, image: _ImageRun, channels: torch.Tensor, checked: bool
    ) -> torch.Tensor:
        """Scores of ablated copies, the network before the layer run on an empty batch (modes 2, 2a).

        The first copy is unablated (``checked``: it is ``channels[0]``, else one is added); its
        score must be the image's known score.
        """
        batch = _with_unablated(channels, checked)
        if run.mode == CACHED and run.pool is not None:
            scores = self._checked_scores(run, image, batch, lambda: self._pooled_forward(run, image, batch))
            if scores is not None:
                return scores if checked else scores[1:]
            run.pool, run.pack = None, 1  # the pooled route failed here: copies of the layer's output
            if channels.numel() > self.batch_size:  # in pieces of batch_size, as that route runs
                pieces = torch.split(channels, self.batch_size)
                return torch.cat(
                    [
                        self._cached_scores(run, image, piece, checked and i == 0)
                        for i, piece in enumerate(pieces)
                    ]
                )
        if run.mode == CACHED:
            watch: list[nn.Module] | None = None if run.pool_decided else []
            scores = self._checked_scores(
                run, image, batch, lambda: self._ablated_forward(run, image.image[:0], batch, image, watch)
            )
            if scores is not None:
                if watch is not None and bool((batch >= 0).any()):
                    run.pool_decided = True
                    self._try_pooled_route(run, image, batch, scores, watch)
                return scores if checked else scores[1:]
            run.mode = PREFIX
        return self._live_scores(run, image, channels, checked)

    def _checked_scores(
        self, run: _LayerRun, image: _ImageRun, batch: torch.Tensor, forward: Callable[[], Any]
    ) -> torch.Tensor | None:
        """The scores of a pass whose copy ``batch[0]`` is unablated; None if the pass fails or that
        copy does not score the image's known ``y``."""
        copies = int(batch.shape[0])
        try:
            outputs = forward()
            self._check_batch(outputs, copies, strict=True)
        except Exception as error:
            if error is run.hook_error or _out_of_memory(error):
                raise
            return None
        scores = target_scores([image.target] * copies, outputs, copies)
        if not bool(torch.isclose(scores[0], image.score, rtol=1e-4, atol=1e-6)):
            return None
        return scores

    def _try_pooled_route(
        self,
        run: _LayerRun,
        image: _ImageRun,
        batch: torch.Tensor,
        expected: torch.Tensor,
        watch: list[nn.Module],
    ) -> None:
        """Take the pooled route (step 2a) if exactly one per-channel pool took the copies in the
        last pass and the route gives that pass's ``expected`` scores again."""
        pools = list({id(module): module for module in watch}.values())
        layout = run.layout
        if (
            len(pools) != 1
            or type(self.ablation_layer) is not AblationLayer
            or layout is None
            or layout.axis != 1
            or not torch.equal(layout.index.cpu(), torch.arange(run.channels))
        ):
            return
        run.pool = pools[0]
        try:
            self._pool_image(run, image)
        except Exception as error:  # a pool that cannot take the batch of 2: no pooled route
            if _out_of_memory(error):
                raise
            run.pool = None
            return
        if image.pooled[0].numel() >= image.output[0].numel():  # nothing to gain (e.g. VGG's 7x7 pool)
            run.pool = None
            return
        scores = self._checked_scores(run, image, batch, lambda: self._pooled_forward(run, image, batch))
        if scores is None or not bool(torch.isclose(scores, expected, rtol=1e-4, atol=1e-5).all()):
            run.pool = None
            return
        run.pack = max(1, image.output[0].numel() // image.pooled[0].numel())

    @staticmethod
    def _pool_image(run: _LayerRun, image: _ImageRun) -> None:
        """Set ``image.pooled`` and ``image.pooled_ablated`` (one call of the pool, on batch 2)."""
        if image.pooled is not None:
            return
        output = image.output
        values = P.ablation_values(output).reshape(-1, *([1] * (output.dim() - 1)))
        both = run.pool(torch.cat([output, values.expand_as(output)]))
        if not isinstance(both, torch.Tensor) or both.shape[:2] != (2, run.channels):
            raise _NotABatch(f"the pool returned {type(both).__name__}, not a (2, C, ...) tensor")
        image.pooled, image.pooled_ablated = both[:1], both[1:]

    def _pooled_forward(self, run: _LayerRun, image: _ImageRun, channels: torch.Tensor) -> Any:
        """Run the model on an empty batch with the pool's output replaced by pooled ablated copies."""
        self._pool_image(run, image)
        copies = P.ablate_pooled(image.pooled, image.pooled_ablated, channels)
        thread = threading.get_ident()
        marked: list[Any] = []
        fired: list[bool] = []
        calls: list[bool] = []
        chosen = self.layer_calls()[run.index] or 0

        def mark(module: nn.Module, inputs: Any, output: Any) -> None:
            if threading.get_ident() == thread:
                calls.append(True)
                if len(calls) - 1 == chosen:  # only the chosen call's output (layer_call) feeds the copies
                    marked.append(output)

        def substitute(module: nn.Module, inputs: Any, output: Any) -> Any:
            if threading.get_ident() != thread or not marked or not inputs or inputs[0] is not marked[-1]:
                return None
            fired.append(True)
            return copies

        handles = [run.layer.register_forward_hook(mark), run.pool.register_forward_hook(substitute)]
        try:
            outputs = self.model(image.image[:0])
        finally:
            for handle in handles:
                handle.remove()
        if not fired:
            raise _NotABatch("the pool did not take the target layer's output")
        self._check_calls(run, len(calls))
        return outputs

    def _live_scores(
        self, run: _LayerRun, image: _ImageRun, channels: torch.Tensor, checked: bool
    ) -> torch.Tensor:
        """Scores of ablated copies, the network before the layer run on the image, on a small
        input, or on repeats of the image (modes 1, 3 and 4). ``checked``: ``channels[0]`` is the
        unablated copy (the small route adds one otherwise)."""
        copies = int(channels.shape[0])
        if run.mode in (CACHED, PREFIX):  # CACHED: an image's first pass without a capture
            try:
                outputs = self._ablated_forward(run, image.image, channels, image)
                self._check_batch(outputs, copies)
            except Exception as error:
                if error is run.hook_error or _out_of_memory(error):
                    raise
                run.reason = error
                run.mode = SMALL
            else:
                return target_scores([image.target] * copies, outputs, copies)
        if run.mode == SMALL and image.score is None:
            # no score to check a small pass against yet (no capture): this pass runs the whole
            # network, and gives the score for the next ones
            return self._repeated_scores(run, image, channels)
        if run.mode == SMALL:
            scores = self._small_scores(run, image, channels, checked)
            if scores is not None:
                return scores
            run.mode = FULL
            self.used_fallback = True
            reason = run.reason or _NotABatch("the passes did not reproduce the unablated score")
            warnings.warn(
                f"AblationCAM: the network after target_layers[{run.index}] "
                f"({type(run.layer).__name__}) does not run on a batch of ablated copies "
                f"({type(reason).__name__}: {reason}); running the whole network on repeats of "
                "the image instead (correct, slower)",
                stacklevel=2,
            )
        return self._repeated_scores(run, image, channels)

    def _repeated_scores(self, run: _LayerRun, image: _ImageRun, channels: torch.Tensor) -> torch.Tensor:
        """Scores of ablated copies from the whole network run on repeats of the image (mode 4)."""
        copies = int(channels.shape[0])
        repeated = image.image.expand(copies, *image.image.shape[1:])
        outputs = self._ablated_forward(run, repeated, channels, image)
        return target_scores([image.target] * copies, outputs, copies)

    def _small_scores(
        self, run: _LayerRun, image: _ImageRun, channels: torch.Tensor, checked: bool
    ) -> torch.Tensor | None:
        """Scores of ablated copies from a model input of one row per copy, each a zero image of
        a fraction of the input's size (mode 3): the network before the layer does little work and
        the hook substitutes copies of the kept output. For models that reshape by the input's
        batch size after the layer (``x.view(inputs.size(0), -1)``). None if no input size in
        :data:`SMALL_INPUT_DIVISORS` gives a pass whose unablated copy scores ``y``."""
        if image.output is None:
            return None
        batch = _with_unablated(channels, checked)
        while run.divisors:
            size = [max(1, int(s) // run.divisors[0]) for s in image.image.shape[2:]]
            model_input = image.image.new_zeros(int(batch.shape[0]), image.image.shape[1], *size)
            scores = self._checked_scores(
                run,
                image,
                batch,
                lambda model_input=model_input: self._ablated_forward(
                    run, model_input, batch, image, kept=True
                ),
            )
            if scores is not None:
                return scores if checked else scores[1:]
            run.divisors = run.divisors[1:]
        return None

    @staticmethod
    def _check_batch(outputs: Any, copies: int, strict: bool = False) -> None:
        """Raise :class:`_NotABatch` unless every tensor of the model output has a row per copy.

        A single copy of a batch-1 input is the model's ordinary call: checked only if ``strict``.
        """
        if copies > 1 or strict:
            shapes = [tuple(t.shape) for t in tensors_in(outputs)]
            if not shapes or any(len(shape) == 0 or shape[0] != copies for shape in shapes):
                raise _NotABatch(f"the model output has shapes {shapes}, not a batch of {copies}")

    def _ablated_forward(
        self,
        run: _LayerRun,
        model_input: torch.Tensor,
        channels: torch.Tensor,
        image: _ImageRun,
        watch: list[nn.Module] | None = None,
        kept: bool = False,
    ) -> Any:
        """Run the model with the target layer's output replaced by its ablated copies.

        With an empty ``model_input`` the copies are made from ``image.output``; else from the
        layer's output, which is kept in ``image.output`` the first time; with ``kept``, from
        ``image.output`` whatever the input. With ``watch``, the per-channel pooling modules that
        take the copies as their input are appended to it.
        """
        thread = threading.get_ident()
        fired = []
        returned: list[Any] = []
        cached = model_input.shape[0] == 0 or kept
        chosen = self.layer_calls()[run.index] or 0

        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            if threading.get_ident() != thread:
                return None
            fired.append(True)
            if len(fired) - 1 != chosen:
                return None  # another call of the layer (layer_call): not ablated
            try:
                if cached:
                    output = image.output
                elif image.output is None:
                    image.output = map_tensors(lambda t: t[:1].clone(), output)
                if not run.has_layout:
                    run.layout = self.ablation_layer.layout(output, self.reshape_transform)
                    run.has_layout = True
                    if run.layout is not None and run.layout.channels != run.channels:
                        raise ValueError(
                            f"{type(self.ablation_layer).__name__} finds {run.layout.channels} channels in "
                            f"target_layers[{run.index}]'s output, but the CAM's activations have "
                            f"{run.channels}; check reshape_transform and ablation_layer"
                        )
                returned.append(self.ablation_layer(output, channels, run.layout))
                return returned[-1]
            except Exception as error:
                run.hook_error = error
                raise

        def see(module: nn.Module, inputs: Any) -> None:
            if threading.get_ident() == thread and returned and inputs and inputs[0] is returned[-1]:
                watch.append(module)

        handles = [run.layer.register_forward_hook(hook)]
        if watch is not None:
            handles += [
                module.register_forward_pre_hook(see)
                for module in self.model.modules()
                if module is not run.layer and is_per_channel_pool(module)
            ]
        try:
            outputs = self.model(model_input)
        finally:
            for handle in handles:
                handle.remove()
        if not fired:
            raise ValueError(f"target_layers[{run.index}] did not run in the ablation forward pass")
        self._check_calls(run, len(fired))
        return outputs

    def _check_calls(self, run: _LayerRun, count: int) -> None:
        """The ValueError of :func:`check_layer_calls` for the layer's calls in an ablation pass."""
        label = f"target_layers[{run.index}] ({type(run.layer).__name__})"
        try:
            check_layer_calls([count], [self.layer_calls()[run.index]], [label])
        except ValueError as error:
            run.hook_error = error  # raised as it is, not taken for a route that failed
            raise
