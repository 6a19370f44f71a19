"""Where a run's images come from: a folder's files or a user's dataset, turned into samples.

A :class:`Sample` is what a DataLoader worker hands the main process: the model's input tensor and
the pictures the writer needs (or the reason a file or item was bad: a worker never raises).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pytorch_grad_cam.batch.files import BadImage, load_rgb, resize_rgb

#: The longer side of a gallery thumbnail, in pixels.
THUMBNAIL_SIZE = 160


@dataclasses.dataclass
class Sample:
    """One image, prepared by a worker. ``error`` is set (and ``tensor`` None) for a bad one."""

    index: int
    tensor: torch.Tensor | None = None
    error: str | None = None
    meta: Any = None
    cam_size: tuple[int, int] = (0, 0)
    overlay_rgb: np.ndarray | None = None
    thumbnail_rgb: np.ndarray | None = None
    converted_from: str | None = None


def thumbnail_size(size: tuple[int, int]) -> tuple[int, int]:
    height, width = size
    scale = THUMBNAIL_SIZE / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class FolderSamples(Dataset):
    """Image files -> normalised ``(3, H, W)`` tensors (bad files -> an error sample, never raises)."""

    def __init__(
        self,
        files: Sequence[str],
        *,
        image_size: tuple[int, int],
        cam_size: tuple[int, int] | None,
        mean: Sequence[float],
        std: Sequence[float],
        overlay: bool,
        thumbnail: bool,
    ) -> None:
        self.files = list(files)
        self.image_size = image_size
        self.cam_size = cam_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.overlay = overlay
        self.thumbnail = thumbnail
        # a JPEG may be decoded at a reduced scale when no full-size output is needed
        needed = [*image_size, *(cam_size or ())]
        self.draft_size = max(needed) if cam_size is not None or not overlay else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        try:
            image, original_size, converted_from = load_rgb(self.files[index], draft_size=self.draft_size)
            cam_size = self.cam_size or original_size
            pixels = resize_rgb(image, self.image_size).astype(np.float32) / 255.0
            tensor = torch.from_numpy((pixels - self.mean) / self.std).permute(2, 0, 1).contiguous()
            return Sample(
                index,
                tensor,
                cam_size=cam_size,
                overlay_rgb=resize_rgb(image, cam_size) if self.overlay else None,
                thumbnail_rgb=resize_rgb(image, thumbnail_size(cam_size)) if self.thumbnail else None,
                converted_from=converted_from,
            )
        except BadImage as error:
            return Sample(index, error=str(error))
        except Exception as error:  # a worker must survive any one file
            return Sample(index, error=f"{type(error).__name__}: {error}")


def tensor_as_rgb(tensor: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A ``(C, H, W)`` input min-max scaled to an ``(H', W', 3)`` uint8 picture (1 or 3 channels)."""
    picture = tensor.detach().float()
    if picture.shape[0] == 1:
        picture = picture.expand(3, -1, -1)
    picture = picture[:3]
    picture = (picture - picture.min()) / (picture.max() - picture.min() + 1e-7)
    picture = torch.nn.functional.interpolate(
        picture.unsqueeze(0), size=tuple(size), mode="bilinear", align_corners=False
    )[0]
    return (picture.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


class DatasetSamples(Dataset):
    """A user's map-style dataset of ``(tensor, meta)`` -> samples (an item that raises -> error)."""

    def __init__(
        self, dataset: Any, *, cam_size: tuple[int, int] | None, overlay: bool, thumbnail: bool
    ) -> None:
        self.dataset = dataset
        self.cam_size = cam_size
        self.overlay = overlay
        self.thumbnail = thumbnail

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        try:
            item = self.dataset[index]
            tensor, meta = (
                (item[0], item[1]) if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
            )
            if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3 or not tensor.is_floating_point():
                shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                return Sample(index, error=f"the dataset item is not a floating (C, H, W) tensor: {shape}")
            cam_size = self.cam_size or (int(tensor.shape[1]), int(tensor.shape[2]))
            return Sample(
                index,
                tensor,
                meta=meta,
                cam_size=cam_size,
                overlay_rgb=tensor_as_rgb(tensor, cam_size) if self.overlay else None,
                thumbnail_rgb=tensor_as_rgb(tensor, thumbnail_size(cam_size)) if self.thumbnail else None,
            )
        except Exception as error:  # a worker must survive any one item
            return Sample(index, error=f"{type(error).__name__}: {error}")


def as_list(samples: list[Sample]) -> list[Sample]:
    return samples
