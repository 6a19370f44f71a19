"""Pure torch functions for the perturbation CAMs (ScoreCAM, SS-CAM, IS-CAM, AblationCAM).

No hooks and no model calls here: masks, de-duplication of identical channels, which raw elements
form a channel, the ablation value and the score-drop weights. Maps are ``(N, *spatial)`` with 2 or
3 spatial axes; channel sets are the rows of an ``(N, ...)`` tensor.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

#: Added to ``max - min`` when a ScoreCAM mask is normalised (the reference library's value).
SCORE_CAM_EPS = 1e-8
#: Added to the maximum when torchcam normalises an activation map (its value).
TORCHCAM_EPS = 1e-8
#: How far below the image's minimum a channel is ablated when the layer has negative values.
ABLATION_OFFSET = 1e7


def _interpolation_mode(spatial: int) -> str:
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}.get(spatial)
    if mode is None:
        raise ValueError(f"maps must have 1, 2 or 3 spatial axes; got {spatial}")
    return mode


def upsample(maps: torch.Tensor, size: Sequence[int], align_corners: bool) -> torch.Tensor:
    """(Bi/tri)linear resize of single-channel maps.

    Args:
        maps: ``(N, *s)`` with 2 or 3 spatial axes.
        size: the target spatial size.
        align_corners: ``True`` is what the reference ScoreCAM does (``UpsamplingBilinear2d``),
            ``False`` is what torchcam does.

    Returns:
        ``(N, *size)``.
    """
    size = tuple(int(s) for s in size)
    mode = _interpolation_mode(len(size))
    if maps.dim() - 1 != len(size):
        raise ValueError(f"size {size} does not match maps of shape {tuple(maps.shape)}")
    return F.interpolate(maps.unsqueeze(1), size=size, mode=mode, align_corners=align_corners).squeeze(1)


def min_max_masks(maps: torch.Tensor, eps: float = SCORE_CAM_EPS) -> torch.Tensor:
    """Per map ``(m - min) / (max - min + eps)`` over its positions.

    Args:
        maps: ``(N, *s)``.

    Returns:
        ``(N, *s)`` in [0, 1); a constant map becomes all zeros.
    """
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.amin(dim=1, keepdim=True)
    high = flat.amax(dim=1, keepdim=True)
    return ((flat - low) / (high - low + eps)).reshape(maps.shape)


def score_cam_masks(channels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """ScoreCAM masks: upsample each channel (``align_corners=True``), then min-max normalise it.

    ``M_k = (U(A_k) - min U(A_k)) / (max U(A_k) - min U(A_k) + 1e-8)``.

    Args:
        channels: ``(N, *s)`` activation channels.
        size: the input's spatial size.

    Returns:
        ``(N, *size)`` masks in [0, 1).
    """
    return min_max_masks(upsample(channels, size, align_corners=True))


def torchcam_normalize(channels: torch.Tensor, eps: float = TORCHCAM_EPS) -> torch.Tensor:
    """torchcam's normalisation of a map: ``(x - min) / (max(x - min) + eps)`` per map.

    torchcam normalises at the layer's resolution and upsamples afterwards; a constant map becomes
    exactly zero.

    Args:
        channels: ``(N, *s)``.

    Returns:
        ``(N, *s)``.
    """
    flat = channels.reshape(channels.shape[0], -1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    return (flat / (flat.amax(dim=1, keepdim=True) + eps)).reshape(channels.shape)


def unique_rows(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group identical rows.

    Args:
        keys: ``(N, ...)``; rows are compared for exact equality.

    Returns:
        ``(first, inverse)``: ``first`` ``(U,)`` the index of the first row of each distinct value,
        in increasing order, and ``inverse`` ``(N,)`` such that row ``i`` equals row
        ``first[inverse[i]]``.
    """
    flat = keys.reshape(keys.shape[0], -1)
    _, groups = torch.unique(flat, dim=0, return_inverse=True)
    count = int(groups.max()) + 1 if groups.numel() else 0
    positions = torch.arange(flat.shape[0], device=flat.device)
    first = torch.full((count,), flat.shape[0], dtype=torch.long, device=flat.device)
    first = first.scatter_reduce(0, groups, positions, reduce="amin")
    # Renumber the groups by their first row, so the order does not depend on the sort of unique.
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(count, device=flat.device)
    return first[order], rank[groups]


def ablation_values(outputs: torch.Tensor) -> torch.Tensor:
    """The value an ablated channel is set to, per sample.

    0 when the sample's activations are all ``>= 0`` (the usual case after a ReLU), else
    ``min - 1e7``: far below anything the layer produced, so the channel is "off" for the layers
    that follow even where 0 is an ordinary value.

    Args:
        outputs: ``(K, ...)`` a layer output, one sample per row.

    Returns:
        ``(K,)`` in the outputs' dtype.
    """
    low = outputs.reshape(outputs.shape[0], -1).amin(dim=1)
    return torch.where(low >= 0, torch.zeros_like(low), low - ABLATION_OFFSET)


def relative_score_drop(scores: torch.Tensor, ablated_scores: torch.Tensor) -> torch.Tensor:
    """AblationCAM weights ``w_k = (y - y_k) / y``.

    Where ``y == 0`` the relative drop is undefined; the absolute drop ``y - y_k`` is used (the
    denominator becomes 1). Each CAM is min-max scaled afterwards, so only the sign of the
    denominator matters: this is the limit ``y -> 0+``, and it never gives NaN or inf.

    Args:
        scores: ``(B,)`` the target scores ``y`` of the unablated images.
        ablated_scores: ``(B, C)`` the scores ``y_k`` with channel ``k`` ablated.

    Returns:
        ``(B, C)``.
    """
    base = scores.reshape(-1, 1)
    denominator = torch.where(base == 0, torch.ones_like(base), base)
    return (base - ablated_scores) / denominator


def channels_to_ablate(activations: torch.Tensor, ratio: float) -> torch.Tensor:
    """The channels AblationCAM ablates for one image.

    With ``ratio == 1`` every channel; else the ``max(1, int(ratio * C))`` channels with the largest
    mean absolute activation (ties keep the lower index). The other channels keep weight 0.

    Args:
        activations: ``(C, *s)`` one image's activations.
        ratio: in (0, 1].

    Returns:
        ``(n,)`` int64 channel indices in increasing order.
    """
    channels = activations.shape[0]
    if ratio >= 1:
        return torch.arange(channels, device=activations.device)
    count = min(channels, max(1, int(ratio * channels)))
    strength = activations.reshape(channels, -1).abs().mean(dim=1)
    order = torch.sort(strength, descending=True, stable=True).indices
    return torch.sort(order[:count]).values


def unchanged_by_ablation(activations: torch.Tensor) -> torch.Tensor:
    """The channels that ablating would not change: all of their values already equal the
    ablation value (0: channels that are all zero in a non-negative output, common after a ReLU).

    Ablating such a channel gives the unablated output back, so its ablated score is the
    unablated one and its AblationCAM weight is 0 without a forward pass. (An output with negative
    values is ablated to ``min - 1e7``, which no channel holds.)

    Args:
        activations: ``(C, *s)`` one image's layer output, every element of it.

    Returns:
        ``(C,)`` bool.
    """
    flat = activations.reshape(activations.shape[0], -1)
    if flat.numel() == 0 or bool(flat.min() < 0):
        return torch.zeros(activations.shape[0], dtype=torch.bool, device=activations.device)
    return (flat == 0).all(dim=1)


@dataclasses.dataclass(frozen=True)
class ChannelLayout:
    """Which raw elements of a layer output form each channel of the CAM.

    Attributes:
        axis: the axis of the raw output (batch axis 0 included) that holds the channels, or
            None when no single axis does.
        index: with ``axis``: ``(C,)`` the index along ``axis`` of channel ``k``. Without:
            ``(C, P)`` the flat positions, within one sample's raw output, of channel ``k``.
    """

    axis: int | None
    index: torch.Tensor

    @property
    def channels(self) -> int:
        return int(self.index.shape[0])


def _pushed_index(sample_shape: tuple[int, ...], reshape_transform: Callable[[Any], Any]) -> torch.Tensor:
    """Push ``arange(numel)`` shaped like one sample through the transform; int64 positions back."""
    numel = math.prod(sample_shape)
    failure = None
    for dtype in (torch.int64, torch.float64):
        index = torch.arange(numel, dtype=dtype).reshape(1, *sample_shape)
        try:
            mapped = reshape_transform(index)
        except Exception as error:  # the transform may not accept integers: try float64 next
            failure = error
            continue
        if not isinstance(mapped, torch.Tensor) or mapped.dim() < 3 or mapped.shape[0] != 1:
            break
        if mapped.is_floating_point():
            if not bool((mapped == mapped.round()).all()):
                break
            mapped = mapped.round().long()
        if mapped.numel() == 0 or int(mapped.min()) < 0 or int(mapped.max()) >= numel:
            break
        return mapped.long()
    raise ValueError(
        "AblationCAM locates channel k of the target layer's raw output by pushing an index tensor "
        "through reshape_transform, which must therefore only select, reshape and permute elements "
        "and return a (1, C, *spatial) tensor for a batch of one; this transform does not "
        f"(raw sample shape {sample_shape}). Pass ablation_layer=... to say how a channel is ablated."
    ) from failure


def channel_layout(
    sample_shape: Sequence[int], reshape_transform: Callable[[Any], Any] | None = None
) -> ChannelLayout:
    """Find which raw elements of a layer output form channel ``k`` of the CAM's ``(B, C, *s)`` view.

    An index tensor ``arange(numel)`` shaped like one sample is pushed through ``reshape_transform``;
    channel ``k`` of the result lists the raw positions that form channel ``k``. When one raw axis
    holds the channels (its coordinate is constant within each channel and distinct across
    channels) the whole raw slice along that axis is the channel, so elements the transform drops,
    such as a ViT's class token, are ablated too (as 1.5.x's ``AblationLayerVit`` does). Otherwise
    exactly the listed positions are.

    Args:
        sample_shape: the raw output's shape without the batch axis.
        reshape_transform: the CAM's transform, or None for ``(B, C, *s)`` outputs.

    Returns:
        the layout.

    Raises:
        ValueError: a transform that does arithmetic on the values, or returns no ``(1, C, ...)``
            tensor.
    """
    sample_shape = tuple(int(s) for s in sample_shape)
    if reshape_transform is None:
        if len(sample_shape) < 1:
            raise ValueError("a target layer output needs a channel axis: (B, C, *spatial)")
        return ChannelLayout(axis=1, index=torch.arange(sample_shape[0]))
    mapped = _pushed_index(sample_shape, reshape_transform)
    positions = mapped[0].reshape(mapped.shape[1], -1)
    candidates = []
    stride = 1
    for axis in reversed(range(len(sample_shape))):
        coordinate = (positions // stride) % sample_shape[axis]
        stride *= sample_shape[axis]
        per_channel = coordinate[:, 0]
        constant = bool((coordinate == per_channel[:, None]).all())
        if constant and torch.unique(per_channel).numel() == per_channel.numel():
            candidates.append((axis + 1, per_channel))
    if len(candidates) == 1:
        axis, index = candidates[0]
        return ChannelLayout(axis=axis, index=index)
    return ChannelLayout(axis=None, index=positions)


def ablate_channels(
    outputs: torch.Tensor, channels: torch.Tensor, layout: ChannelLayout, values: torch.Tensor
) -> torch.Tensor:
    """Copies of a layer output, copy ``i`` with channel ``channels[i]`` set to ``values[i]``.

    Args:
        outputs: ``(1, *raw)`` (repeated to ``K`` copies) or ``(K, *raw)``.
        channels: ``(K,)`` int64 channel per copy; ``-1`` leaves that copy unablated.
        layout: from :func:`channel_layout`.
        values: ``(K,)`` the ablation value of each copy.

    Returns:
        ``(K, *raw)`` a new tensor; ``outputs`` is not modified.
    """
    copies = int(channels.shape[0])
    if outputs.shape[0] not in (1, copies):
        raise ValueError(f"outputs must have batch 1 or {copies}; got shape {tuple(outputs.shape)}")
    result = outputs.expand(copies, *outputs.shape[1:]).clone(memory_format=torch.contiguous_format)
    channels = channels.to(result.device)
    rows = torch.nonzero(channels >= 0).flatten()
    if rows.numel() == 0:
        return result
    picked = layout.index.to(result.device)[channels[rows]]
    fill = values.to(device=result.device, dtype=result.dtype)[rows]
    if layout.axis is not None:
        moved = result.movedim(layout.axis, 1)
        moved[rows, picked] = fill.reshape(-1, *([1] * (moved.dim() - 2)))
    else:
        result.view(copies, -1)[rows[:, None], picked] = fill[:, None]
    return result


def ablate_pooled(pooled: torch.Tensor, pooled_ablated: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Copies of a per-channel pool of a layer output, copy ``i`` with channel ``channels[i]`` ablated.

    A pool that works channel by channel (average or max pooling) maps an output whose channel
    ``k`` is ablated to the pool of the unablated output with channel ``k`` replaced by the pool of
    the ablated channel alone. So the pooled copies can be built from two pooled tensors, without
    the ablated copies of the (larger) layer output.

    Args:
        pooled: ``(1, C, *p)`` the pool of the unablated layer output.
        pooled_ablated: ``(1, C, *p)`` the pool of the layer output with every channel ablated:
            its channel ``k`` is the pool of an ablated channel ``k``.
        channels: ``(K,)`` int64 channel per copy; ``-1`` leaves that copy unablated.

    Returns:
        ``(K, C, *p)`` a new tensor.
    """
    if pooled.shape[0] != 1 or pooled_ablated.shape != pooled.shape:
        raise ValueError(
            f"pooled and pooled_ablated must both have shape (1, C, ...); got {tuple(pooled.shape)} "
            f"and {tuple(pooled_ablated.shape)}"
        )
    copies = int(channels.shape[0])
    result = pooled.expand(copies, *pooled.shape[1:]).clone(memory_format=torch.contiguous_format)
    channels = channels.to(result.device)
    rows = torch.nonzero(channels >= 0).flatten()
    picked = channels[rows]
    result[rows, picked] = pooled_ablated[0, picked]
    return result


def check_ratio(value: object, name: str = "ratio_channels_to_ablate") -> float:
    """A number in (0, 1], or a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in (0, 1]; got {value!r}")
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1]; got {value}")
    return value
