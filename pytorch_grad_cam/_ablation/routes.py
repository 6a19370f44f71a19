"""How AblationCAM's passes of one target layer run: the five routes and the checks that choose between them.

Fastest first (see :class:`~pytorch_grad_cam.ablation_cam.AblationCAM` for the whole story):

- ``"pooled"``: the network before the layer does no work (an empty batch), and the per-channel pool
  that takes the layer's output gets pooled ablated copies (smaller than the layer's output);
- ``"cached"``: an empty batch, and the layer's output is replaced by ablated copies of the output
  kept from the capture;
- ``"prefix"``: the image alone (batch 1) runs up to the layer;
- ``"small"``: one small zero image per copy runs up to the layer (models that reshape by the
  input's batch size after it);
- ``"full"``: the whole network on repeats of the image (the fallback: always correct, slower).

A route is left for the next one when a pass raises (other than running out of memory or an error
of the ablation itself), does not return a row per copy, or its unablated copy does not score the
image's known ``y``. :class:`LayerRoutes` keeps the route a layer has reached for the rest of a call.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import torch
from torch import nn

from pytorch_grad_cam._ablation import passes as AP
from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam._core.caller import caller_level
from pytorch_grad_cam._core.outputs import map_tensors
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.activations_and_gradients import check_layer_calls

#: The routes, fastest first.
POOLED, CACHED, PREFIX, SMALL, FULL = "pooled", "cached", "prefix", "small", "full"

#: The small route's input: each spatial size divided by the first of these the model runs with
#: (at least 1 pixel).
SMALL_INPUT_DIVISORS = (16, 8, 4, 2)


@dataclasses.dataclass(frozen=True)
class AblationSettings:
    """What the passes take from the method: the model and how a channel is ablated."""

    model: nn.Module
    ablation_layer: AblationLayer
    reshape_transform: Callable[[Any], Any] | None
    batch_size: int


@dataclasses.dataclass
class ImageRun:
    """One image's unablated layer output (batch 1) and target score, from its first pass."""

    image: torch.Tensor
    target: Target
    output: Any = None
    score: torch.Tensor | None = None
    #: ``(1, C, *p)`` the pool of ``output``, and of ``output`` with every channel ablated
    pooled: torch.Tensor | None = None
    pooled_ablated: torch.Tensor | None = None


def with_unablated(channels: torch.Tensor, checked: bool) -> torch.Tensor:
    """``channels`` with an unablated copy (``-1``) first, unless ``checked`` says it has one."""
    return channels if checked else torch.cat([channels.new_full((1,), -1), channels])


class LayerRoutes:
    """The ablation passes of one target layer within a call, and the route they have reached.

    Args:
        settings: the model, ablation layer, transform and batch size (may be replaced between
            calls of :meth:`image_scores`).
        layer: the target layer.
        index: its index in ``target_layers`` (for messages).
        channels: ``C``, the number of channels of the CAM's activations.

    Attributes:
        mode: the route the passes have reached (``"cached"`` with :attr:`pool` is the pooled route).
        used_fallback: whether the passes run the whole network (:data:`FULL`).
    """

    def __init__(
        self,
        settings: AblationSettings,
        layer: nn.Module,
        index: int,
        channels: int,
        call: int | None = None,
    ) -> None:
        self.settings = settings
        self.layer = layer
        self.index = index
        self.channels = channels
        #: the call of the layer whose output is ablated (``layer_call``; None: it must run once)
        self.call = call
        self.mode = CACHED
        self.layout: P.ChannelLayout | None = None
        self.has_layout = False
        self.hook_error: BaseException | None = None
        #: the per-channel pool that the pooled route substitutes, once verified
        self.pool: nn.Module | None = None
        #: whether the pooled route was tried (it is tried once per layer and call)
        self.pool_decided = False
        #: copies per pass, in units of ``batch_size`` (layer output size / pooled size on that route)
        self.pack = 1
        #: why the passes left the batch-1 route (for the fallback's warning)
        self.reason: BaseException | None = None
        #: the divisors of the input size the small route may still use (the first is the one that works)
        self.divisors: tuple[int, ...] = SMALL_INPUT_DIVISORS

    @property
    def route(self) -> str:
        """The route the passes took: ``"pooled"``, ``"cached"``, ``"prefix"``, ``"small"`` or ``"full"``."""
        return POOLED if self.mode == CACHED and self.pool is not None else self.mode

    @property
    def used_fallback(self) -> bool:
        return self.mode == FULL

    def image_scores(
        self, image: ImageRun, plan: torch.Tensor, on_step: Callable[[int], Any] | None = None
    ) -> torch.Tensor:
        """The scores of one image's ablated copies, in passes of ``batch_size`` (times :attr:`pack`).

        Args:
            image: the image; with ``output`` and ``score`` when the capture gave them (else the
                first pass runs the image and keeps them).
            plan: ``(n,)`` int64 channels to ablate, ``plan[0] == -1`` the unablated copy.
            on_step: called with the number of copies of each pass (a progress bar's ``update``).

        Returns:
            ``(n,)`` the score of each copy of ``plan``, on the device the passes ran on.
        """
        found = []
        start = 0
        while start < plan.numel():
            chunk = plan[start : start + self.settings.batch_size * self.pack]
            if image.score is None:
                found.append(self.live_scores(image, chunk, checked=True))
                image.score = found[0][0]
            else:
                found.append(self.cached_scores(image, chunk, checked=start == 0))
            start += int(chunk.numel())
            if on_step is not None:
                on_step(int(chunk.numel()))
        return torch.cat(found)

    def checked_scores(
        self, image: ImageRun, batch: torch.Tensor, forward: Callable[[], Any]
    ) -> torch.Tensor | None:
        """The scores of a pass whose copy ``batch[0]`` is unablated; None if the pass fails or that
        copy does not score the image's known ``y``. Out of memory and the ablation's own errors
        are raised."""
        copies = int(batch.shape[0])
        try:
            outputs = forward()
            AP.check_batch(outputs, copies, strict=True)
        except Exception as error:
            if error is self.hook_error or AP.is_out_of_memory(error):
                raise
            return None
        scores = target_scores([image.target] * copies, outputs, copies)
        if not bool(torch.isclose(scores[0], image.score, rtol=1e-4, atol=1e-6)):
            return None
        return scores

    def cached_scores(self, image: ImageRun, channels: torch.Tensor, checked: bool) -> torch.Tensor:
        """Scores of ablated copies, the network before the layer run on an empty batch (the pooled
        and cached routes; the later routes when these fail).

        The first copy is unablated (``checked``: it is ``channels[0]``, else one is added); its
        score must be the image's known score.
        """
        batch = with_unablated(channels, checked)
        if self.mode == CACHED and self.pool is not None:
            scores = self.checked_scores(image, batch, lambda: self._pooled_forward(image, batch))
            if scores is not None:
                return scores if checked else scores[1:]
            self.pool, self.pack = None, 1  # the pooled route failed here: copies of the layer's output
            if channels.numel() > self.settings.batch_size:  # in pieces of batch_size, as that route runs
                pieces = torch.split(channels, self.settings.batch_size)
                return torch.cat(
                    [self.cached_scores(image, piece, checked and i == 0) for i, piece in enumerate(pieces)]
                )
        if self.mode == CACHED:
            watch: list[nn.Module] | None = None if self.pool_decided else []
            scores = self.checked_scores(
                image, batch, lambda: self._ablated_forward(image.image[:0], batch, image, watch)
            )
            if scores is not None:
                if watch is not None and bool((batch >= 0).any()):
                    self.pool_decided = True
                    self.try_pooled_route(image, batch, scores, watch)
                return scores if checked else scores[1:]
            self.mode = PREFIX
        return self.live_scores(image, channels, checked)

    def try_pooled_route(
        self, image: ImageRun, batch: torch.Tensor, expected: torch.Tensor, watch: list[nn.Module]
    ) -> None:
        """Take the pooled route if exactly one per-channel pool took the copies in the last pass
        (``watch``), the ablation is the default one along axis 1, pooling saves memory and the
        route gives that pass's ``expected`` scores again."""
        pools = list({id(module): module for module in watch}.values())
        layout = self.layout
        if (
            len(pools) != 1
            or type(self.settings.ablation_layer) is not AblationLayer
            or layout is None
            or layout.axis != 1
            or not torch.equal(layout.index.cpu(), torch.arange(self.channels))
        ):
            return
        self.pool = pools[0]
        try:
            self._pool_image(image)
        except Exception as error:  # a pool that cannot take the batch of 2: no pooled route
            if AP.is_out_of_memory(error):
                raise
            self.pool = None
            return
        if image.pooled[0].numel() >= image.output[0].numel():  # nothing to gain (e.g. VGG's 7x7 pool)
            self.pool = None
            return
        scores = self.checked_scores(image, batch, lambda: self._pooled_forward(image, batch))
        if scores is None or not bool(torch.isclose(scores, expected, rtol=1e-4, atol=1e-5).all()):
            self.pool = None
            return
        self.pack = max(1, image.output[0].numel() // image.pooled[0].numel())

    def live_scores(self, image: ImageRun, channels: torch.Tensor, checked: bool) -> torch.Tensor:
        """Scores of ablated copies, the network before the layer run on the image, on a small
        input, or on repeats of the image (the prefix, small and full routes). ``checked``:
        ``channels[0]`` is the unablated copy (the small route adds one otherwise)."""
        copies = int(channels.shape[0])
        if self.mode in (CACHED, PREFIX):  # CACHED: an image's first pass without a capture
            try:
                outputs = self._ablated_forward(image.image, channels, image)
                AP.check_batch(outputs, copies)
            except Exception as error:
                if error is self.hook_error or AP.is_out_of_memory(error):
                    raise
                self.reason = error
                self.mode = SMALL
            else:
                return target_scores([image.target] * copies, outputs, copies)
        if self.mode == SMALL and image.score is None:
            # no score to check a small pass against yet (no capture): this pass runs the whole
            # network, and gives the score for the next ones
            return self.repeated_scores(image, channels)
        if self.mode == SMALL:
            scores = self.small_scores(image, channels, checked)
            if scores is not None:
                return scores
            self.mode = FULL
            reason = self.reason or AP.NotABatch("the passes did not reproduce the unablated score")
            warnings.warn(
                f"AblationCAM: the network after target_layers[{self.index}] "
                f"({type(self.layer).__name__}) does not run on a batch of ablated copies "
                f"({type(reason).__name__}: {reason}); running the whole network on repeats of "
                "the image instead (correct, slower)",
                stacklevel=caller_level(),
            )
        return self.repeated_scores(image, channels)

    def repeated_scores(self, image: ImageRun, channels: torch.Tensor) -> torch.Tensor:
        """Scores of ablated copies from the whole network run on repeats of the image (the full route)."""
        copies = int(channels.shape[0])
        repeated = image.image.expand(copies, *image.image.shape[1:])
        outputs = self._ablated_forward(repeated, channels, image)
        return target_scores([image.target] * copies, outputs, copies)

    def small_scores(self, image: ImageRun, channels: torch.Tensor, checked: bool) -> torch.Tensor | None:
        """Scores of ablated copies from a model input of one row per copy, each a zero image of
        a fraction of the input's size (the small route): the network before the layer does little
        work and the hook substitutes copies of the kept output. For models that reshape by the
        input's batch size after the layer (``x.view(inputs.size(0), -1)``). None if no input size
        in :data:`SMALL_INPUT_DIVISORS` gives a pass whose unablated copy scores ``y``."""
        if image.output is None:
            return None
        batch = with_unablated(channels, checked)
        while self.divisors:
            size = [max(1, int(s) // self.divisors[0]) for s in image.image.shape[2:]]
            model_input = image.image.new_zeros(int(batch.shape[0]), image.image.shape[1], *size)
            scores = self.checked_scores(
                image,
                batch,
                lambda model_input=model_input: self._ablated_forward(model_input, batch, image, kept=True),
            )
            if scores is not None:
                return scores if checked else scores[1:]
            self.divisors = self.divisors[1:]
        return None

    def _pool_image(self, image: ImageRun) -> None:
        """Set ``image.pooled`` and ``image.pooled_ablated`` (one call of the pool, on batch 2)."""
        if image.pooled is None:
            image.pooled, image.pooled_ablated = AP.pool_unablated_and_ablated(
                self.pool, image.output, self.channels
            )

    def _pooled_forward(self, image: ImageRun, channels: torch.Tensor) -> Any:
        """Run the model on an empty batch with the pool's output replaced by pooled ablated copies."""
        self._pool_image(image)
        copies = P.ablate_pooled(image.pooled, image.pooled_ablated, channels)
        model = self.settings.model
        return AP.forward_with_pooled_copies(
            model,
            self.layer,
            self.pool,
            image.image[:0],
            copies,
            call=self.call or 0,
            check_calls=self._check_calls,
        )

    def _ablated_forward(
        self,
        model_input: torch.Tensor,
        channels: torch.Tensor,
        image: ImageRun,
        watch: list[nn.Module] | None = None,
        kept: bool = False,
    ) -> Any:
        """Run the model with the target layer's output replaced by its ablated copies.

        With an empty ``model_input`` the copies are made from ``image.output``; else from the
        layer's output, which is kept in ``image.output`` the first time; with ``kept``, from
        ``image.output`` whatever the input. With ``watch``, the per-channel pooling modules that
        take the copies as their input are appended to it. An error of the ablation itself is kept
        in :attr:`hook_error` (it is raised, never taken for a route that does not work).
        """
        settings = self.settings
        cached = model_input.shape[0] == 0 or kept

        def copies(output: Any) -> Any:
            try:
                if cached:
                    output = image.output
                elif image.output is None:
                    image.output = map_tensors(lambda t: t[:1].clone(), output)
                if not self.has_layout:
                    self.layout = settings.ablation_layer.layout(output, settings.reshape_transform)
                    self.has_layout = True
                    if self.layout is not None and self.layout.channels != self.channels:
                        raise ValueError(
                            f"{type(settings.ablation_layer).__name__} finds {self.layout.channels} "
                            f"channels in target_layers[{self.index}]'s output, but the CAM's "
                            f"activations have {self.channels}; check reshape_transform and ablation_layer"
                        )
                return settings.ablation_layer(output, channels, self.layout)
            except Exception as error:
                self.hook_error = error
                raise

        return AP.forward_with_copies(
            settings.model,
            self.layer,
            model_input,
            copies,
            name=f"target_layers[{self.index}]",
            watch=watch,
            call=self.call or 0,
            check_calls=self._check_calls,
        )

    def _check_calls(self, count: int) -> None:
        """The ValueError of :func:`check_layer_calls` for the layer's calls in an ablation pass.

        It is kept in :attr:`hook_error`, so it is raised as it is, never taken for a failed route.
        """
        label = f"target_layers[{self.index}] ({type(self.layer).__name__})"
        try:
            check_layer_calls([count], [self.call], [label])
        except ValueError as error:
            self.hook_error = error
            raise
