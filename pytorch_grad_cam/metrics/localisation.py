"""Does the map land on the annotated object: pointing game, energy, relevance mass and rank, IoU.

Every function takes ``(B, H, W)`` maps and ``(B, H, W)`` boolean masks of the object (from
:func:`boxes_to_mask` or a segmentation) and returns ``(B,)`` float64 scores, higher is better,
NaN for an image whose mask is empty (nothing to find; leave it out of a mean).

- Pointing game: Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016,
  https://arxiv.org/abs/1608.00507 (a hit when the map's maximum lies within 15 pixels of the object).
- Energy-based pointing game: Wang et al., "Score-CAM", CVPR-W 2020, https://arxiv.org/abs/1910.01279
  (the share of the map's sum inside the boxes).
- Relevance mass and rank accuracy: Arras et al., "CLEVR-XAI", Information Fusion 2022,
  https://arxiv.org/abs/2003.07258.
- IoU of the map thresholded at a share of its maximum (the weakly supervised localisation protocol
  of Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

How these differ from quantus 0.6 is in docs/audit.md (tolerance, ties).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def _check(maps: torch.Tensor, masks: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(maps, torch.Tensor) or not isinstance(masks, torch.Tensor):
        raise TypeError(
            f"{name}: maps and masks must be tensors; got {type(maps).__name__}, {type(masks).__name__}"
        )
    if maps.dim() != 3 or maps.shape != masks.shape:
        raise ValueError(
            f"{name}: maps and masks must be (B, H, W) of one shape; "
            f"got {tuple(maps.shape)}, {tuple(masks.shape)}"
        )
    return maps.detach().double(), masks.to(device=maps.device, dtype=torch.bool)


def _empty_to_nan(scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return torch.where(masks.flatten(1).any(dim=1), scores, torch.full_like(scores, math.nan))


def boxes_to_mask(boxes: torch.Tensor | Sequence[Sequence[float]], size: tuple[int, int]) -> torch.Tensor:
    """The pixels that boxes cover.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2`` in pixels (pixel ``(i, j)`` spans ``[j, j + 1) x [i, i + 1)``;
            a pixel is in when its centre is).
        size: ``(H, W)`` of the mask.

    Returns:
        ``(H, W)`` bool.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    height, width = size
    centres_y = torch.arange(height, dtype=torch.float64) + 0.5
    centres_x = torch.arange(width, dtype=torch.float64) + 0.5
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x1, y1, x2, y2 in boxes.tolist():
        rows = (centres_y >= min(y1, y2)) & (centres_y < max(y1, y2))
        cols = (centres_x >= min(x1, x2)) & (centres_x < max(x1, x2))
        mask |= rows[:, None] & cols[None, :]
    return mask


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` the mask's pixels with a 4-neighbour off the mask (or off the image): the nearest mask
    pixel to any pixel off the mask is one of these (a step towards the outside pixel stays closer)."""
    padded = F.pad(mask[None, None].float(), (1, 1, 1, 1))[0, 0]
    inner = padded[:-2, 1:-1] * padded[2:, 1:-1] * padded[1:-1, :-2] * padded[1:-1, 2:]
    return mask & (inner < 0.5)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, *, tolerance: float = 15) -> torch.Tensor:
    """1 when the map's maximum lies within ``tolerance`` pixels (Euclidean) of the object, else 0.

    Args:
        maps, masks: ``(B, H, W)``.
        tolerance: pixels; 15 in Zhang et al.; 0 asks for a maximum on the object itself (quantus'
            ``PointingGame``).

    Where several pixels hold the maximum (a saturated edge map, a flat CAM) the score is the share
    of them near the object, the expected hit of a random choice among them (quantus counts a hit
    when any of them is on the object, which rewards flat maps).

    Returns:
        ``(B,)`` float64, 0 or 1 without ties (NaN for an empty mask).
    """
    maps, masks = _check(maps, masks, "pointing_game")
    if not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0; got {tolerance!r}")
    peaks = maps == maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    hits = torch.zeros(maps.shape[0], dtype=torch.float64, device=maps.device)
    for i in range(maps.shape[0]):
        outside = torch.nonzero(peaks[i] & ~masks[i]).double()
        edge = torch.nonzero(_boundary(masks[i])).double()
        near = (peaks[i] & masks[i]).sum().double()
        if len(outside) and len(edge):
            for chunk in outside.split(4096):  # a flat map has many peaks: bounded memory
                nearest = torch.cdist(chunk, edge).min(dim=1).values
                near += (nearest <= tolerance + 1e-9).sum()
        hits[i] = near / peaks[i].sum()
    return _empty_to_nan(hits, masks)


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of the map's sum inside the mask: ``sum(map * mask) / sum(map)`` (Arras et al.).

    Meant for non-negative maps (every CAM); signed values are taken as they are, as in quantus.

    Returns:
        ``(B,)`` float64 in [0, 1] for non-negative maps (NaN for an empty mask or an all-zero map).
    """
    maps, masks = _check(maps, masks, "relevance_mass")
    inside = (maps * masks).flatten(1).sum(dim=1)
    return _empty_to_nan(inside / maps.flatten(1).sum(dim=1), masks)


def energy_pointing_game(maps: torch.Tensor, box_masks: torch.Tensor) -> torch.Tensor:
    """Score-CAM's energy-based pointing game: the share of the map's sum inside the boxes.

    The formula of :func:`relevance_mass`; the region is the objects' boxes (from
    :func:`boxes_to_mask`), not their segmentation, so both are reported when masks exist.
    """
    return relevance_mass(maps, box_masks)


def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The share of the ``K`` highest pixels that lie on the object, ``K`` the object's pixel count.

    Pixels tied with the ``K``-th value are counted by their expected share (as if the ties were
    broken at random), so the score does not depend on the pixels' order; without ties this is
    exactly Arras et al.'s (and quantus') rank accuracy.

    Returns:
        ``(B,)`` float64 in [0, 1] (NaN for an empty mask).
    """
    maps, masks = _check(maps, masks, "relevance_rank")
    flat, inside = maps.flatten(1), masks.flatten(1)
    k = inside.sum(dim=1)
    ordered = flat.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1).clamp(min=0)[:, None])
    above, tied = flat > kth, flat == kth
    above_in = (above & inside).sum(1).double()
    tied_in = (tied & inside).sum(1).double()
    share = (k - above.sum(1)).double() / tied.sum(1).double()
    return _empty_to_nan((above_in + share * tied_in) / k.clamp(min=1).double(), masks)


def thresholded_iou(maps: torch.Tensor, masks: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """IoU of ``map >= threshold * max(map)`` with the mask.

    Args:
        threshold: a share of each map's maximum, in (0, 1]; CAM papers use 0.15 to 0.5.

    Returns:
        ``(B,)`` float64 in [0, 1] (NaN for an empty mask).
    """
    maps, masks = _check(maps, masks, "thresholded_iou")
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
    peak = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    region = maps >= threshold * peak
    union = (region | masks).flatten(1).sum(1).double()
    return _empty_to_nan((region & masks).flatten(1).sum(1).double() / union.clamp(min=1), masks)


#: name -> function: the localisation metrics an evaluation reports, with their default options.
LOCALISATION_METRICS = {
    "pointing_game": pointing_game,
    "energy_pointing_game": energy_pointing_game,
    "relevance_mass": relevance_mass,
    "relevance_rank": relevance_rank,
    "iou": thresholded_iou,
}
