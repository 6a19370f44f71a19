"""How AblationCAM ablates a channel of a target layer's output.

An ablation layer is given to ``AblationCAM(..., ablation_layer=...)``. It is not put into the
model (nothing is swapped): AblationCAM's forward hook on the target layer calls it to turn the
layer's output into a batch of copies, copy ``i`` with one channel ablated.

The 1.5.x names are kept. :class:`AblationLayer` (the default) finds the channel from the CAM's
``reshape_transform``, so it also serves transformers; :class:`AblationLayerVit` says outright that
the channels are the last axis of a token output ``(B, tokens, C)``;
:class:`AblationLayerMultiScale` (1.5.x name :class:`AblationLayerFasterRCNN`) ablates one channel
of maps at several strides (a feature pyramid's dict, a neck's list).
The 1.5.x methods that drove the old module swap (``set_next_batch``, ``activations_to_be_ablated``)
are gone: AblationCAM now chooses the channels (``ratio_channels_to_ablate``) itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping

import torch
from torch import nn

from pytorch_grad_cam._core import perturbation as P


class AblationLayer(nn.Module):
    """Ablate channel ``k``: set the raw elements that form it to the ablation value.

    The elements are found by :func:`pytorch_grad_cam._core.perturbation.channel_layout`: channel ``k``
    of the raw output, or, with a ``reshape_transform``, the raw elements the transform puts into
    channel ``k`` (the whole raw slice when one raw axis holds the channels). The value is 0 when
    the image's activations are all ``>= 0``, else ``min - 1e7``
    (:func:`pytorch_grad_cam._core.perturbation.ablation_values`).

    Subclasses may override :meth:`layout` (where a channel is) or :meth:`forward` (how the copies
    are made).
    """

    def layout(self, output: Any, reshape_transform: Callable[[Any], Any] | None) -> P.ChannelLayout | None:
        """Where the channels are in the target layer's raw ``output`` (any batch size).

        Raises:
            ValueError: an output this layer cannot ablate.
        """
        if not isinstance(output, torch.Tensor):
            raise ValueError(
                f"{type(self).__name__} ablates tensor outputs; the target layer returned "
                f"{type(output).__name__}. Pass an ablation_layer made for it (e.g. AblationLayerFasterRCNN)."
            )
        return P.channel_layout(tuple(output.shape[1:]), reshape_transform)

    def forward(self, output: Any, channels: torch.Tensor, layout: P.ChannelLayout | None) -> Any:
        """The ablated copies.

        Args:
            output: the target layer's output, batch 1 (it is repeated) or ``K``.
            channels: ``(K,)`` int64, the channel ablated in each copy; ``-1`` for none.
            layout: what :meth:`layout` returned for this output.

        Returns:
            the output's structure with batch ``K``.
        """
        if layout is None:
            raise ValueError(f"{type(self).__name__} needs the layout its layout() method returns")
        values = P.ablation_values(output).expand(int(channels.shape[0]))
        return P.ablate_channels(output, channels, layout, values)


class AblationLayerVit(AblationLayer):
    """Token outputs ``(B, tokens, C)``: channel ``k`` is ``output[:, :, k]``, every token included."""

    def layout(self, output: Any, reshape_transform: Callable[[Any], Any] | None) -> P.ChannelLayout:
        if not isinstance(output, torch.Tensor) or output.dim() < 3:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"AblationLayerVit ablates token outputs (B, tokens, C); got {shape}")
        return P.ChannelLayout(axis=output.dim() - 1, index=torch.arange(int(output.shape[-1])))


class AblationLayerMultiScale(AblationLayer):
    """Maps at several strides: a mapping (an FPN's dict) or list/tuple (a neck) of ``(B, C_l, h_l, w_l)``.

    The channels are numbered as
    :func:`~pytorch_grad_cam.utils.reshape_transforms.multiscale_reshape_transform` (``reduce="concat"``)
    lays them out.

    Channel ``k`` counts through the levels in their order (channel ``k`` of the CAM is channel
    ``k - C_0 - ... - C_{l-1}`` of level ``l``) and is set to ``value`` at every position of its
    level; the output keeps its structure (mapping type, list or tuple).

    Args:
        value: the ablation value (-1000, the 1.5.x value of :class:`AblationLayerFasterRCNN`).
    """

    def __init__(self, value: float = -1000.0) -> None:
        super().__init__()
        self.value = float(value)

    def layout(self, output: Any, reshape_transform: Callable[[Any], Any] | None) -> P.ChannelLayout | None:
        levels = list(output.values()) if isinstance(output, Mapping) else output
        if not isinstance(levels, (list, tuple)) or not levels:
            raise ValueError(
                f"{type(self).__name__} ablates a dict or list of feature maps; the target layer returned "
                f"{type(output).__name__}"
            )
        for level in levels:
            if not isinstance(level, torch.Tensor) or level.dim() < 3:
                shape = tuple(level.shape) if isinstance(level, torch.Tensor) else type(level).__name__
                raise ValueError(f"{type(self).__name__}: a level is not a (B, C, h, w) map: {shape}")
        return None

    def forward(self, output: Any, channels: torch.Tensor, layout: P.ChannelLayout | None) -> Any:
        copies = int(channels.shape[0])
        named = list(output.items()) if isinstance(output, Mapping) else list(enumerate(output))
        ablated = []
        start = 0
        for _, level in named:
            width = int(level.shape[1])
            local = torch.where(
                (channels >= start) & (channels < start + width),
                channels - start,
                torch.full_like(channels, -1),
            )
            level_layout = P.ChannelLayout(axis=1, index=torch.arange(width))
            values = torch.full((copies,), self.value)
            ablated.append(P.ablate_channels(level, local, level_layout, values))
            start += width
        if int(channels.max()) >= start:
            raise ValueError(f"channel {int(channels.max())} does not exist: there are {start} channels")
        if isinstance(output, Mapping):
            return OrderedDict((key, value) for (key, _), value in zip(named, ablated))
        return tuple(ablated) if isinstance(output, tuple) else ablated


class AblationLayerFasterRCNN(AblationLayerMultiScale):
    """The 1.5.x name of :class:`AblationLayerMultiScale`, for torchvision's FPN dict of maps."""
