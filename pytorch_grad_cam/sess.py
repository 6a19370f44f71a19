"""SESS: a CAM made robust to scale by scoring and explaining many patches (1.5.x meta-method)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam._core.outputs import classifier_logits
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import (
    Target,
    as_targets,
    check_input_tensor,
    model_device_and_dtype,
    positive_int,
)
from pytorch_grad_cam.base_cam import BaseCAM, model_in_eval_mode
from pytorch_grad_cam.grad_cam import GradCAM

#: The Gaussian blur of the fused map: an 11x11 kernel with sigma 5 (as 1.5.x).
BLUR_SIZE, BLUR_SIGMA = 11, 5.0


def window_starts(length: int, step_size: int, window_size: int) -> list[int]:
    """Where windows of ``window_size`` start along an axis of ``length``, every ``step_size``.

    The last window is moved back so that it ends at the border (all windows have the same size);
    an axis shorter than the window has the one start 0.
    """
    starts = []
    for start in range(0, length, step_size):
        if start + window_size >= length:
            starts.append(max(length - window_size, 0))
            break
        starts.append(start)
    return starts


def sliding_window(height: int, width: int, step_size: int, window_size: int) -> list[tuple[int, int]]:
    """The top-left corners ``(x, y)`` of the windows over an image, row by row."""
    xs = window_starts(width, step_size, window_size)
    return [(x, y) for y in window_starts(height, step_size, window_size) for x in xs]


def resize_shorter_side(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, H, W)`` resized so that the shorter side is ``size`` (bilinear, antialiased), as
    ``torchvision.transforms.functional.resize(images, size)`` does."""
    height, width = images.shape[-2:]
    shape = (size, int(size * width / height)) if height <= width else (int(size * height / width), size)
    return F.interpolate(images, size=shape, mode="bilinear", align_corners=False, antialias=True)


def fuse_patch_maps(maps: torch.Tensor, pool: str, theta: float) -> torch.Tensor:
    """``(N, H, W)`` patch maps (pasted at their place, 0 elsewhere) to one ``(H, W)`` map.

    ``'mean'``: at each pixel, the mean of the values above ``theta`` (0 where none is); ``'max'``:
    the maximum.
    """
    if pool == "max":
        return maps.amax(dim=0).clamp_min(0)
    kept = maps > theta
    total = torch.where(kept, maps, torch.zeros_like(maps)).sum(dim=0)
    counts = kept.sum(dim=0)
    return torch.where(counts > 0, total / counts.clamp_min(1), torch.zeros_like(total))


class SESS:
    """SESS: Saliency Enhancing with Scaling and Sliding, around any CAM method.

    Tursun et al., "SESS: Saliency Enhancing with Scaling and Sliding", ECCV 2022,
    https://arxiv.org/abs/2207.01769 (as pytorch-grad-cam 1.5.x implements it).

    Per image: the image is resized so that its shorter side is each of ``scales`` (default
    ``num_scales`` sizes from the window size up, ``round(scale_step_ratio * window)`` apart); a
    ``window_size`` window slides over each by ``step_size``. Every patch is scored by the target
    on the model's softmax (``use_softmax_scores``; else the raw score), clipped at 0; the lowest
    ``pre_filter_ratio`` of the patches are dropped. Each kept patch's ``base_method`` map, times
    its score over the best score, is pasted where the patch came from and resized to the image;
    the maps are fused (``pool='mean'``: the mean of the values above ``theta`` at each pixel;
    ``'max'``), blurred (``smooth``: 11x11 Gaussian, sigma 5) and min-max scaled.

    Args:
        model, target_layers, reshape_transform: as for :class:`~pytorch_grad_cam.base_cam.BaseCAM`.
        base_method: the CAM class run on the patches (default :class:`~pytorch_grad_cam.GradCAM`).
        scales, num_scales, scale_step_ratio, window_size, step_size, pre_filter_ratio: as above,
            as are ``theta``, ``pool``, ``smooth`` and ``use_softmax_scores``; ``window_size``
            defaults to the image's shorter side, ``step_size`` to the window size.
        batch_size: patches per forward pass.
        **kwargs: more options for ``base_method``.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        reshape_transform: Callable[[Any], torch.Tensor] | None = None,
        base_method: type[BaseCAM] = GradCAM,
        scales: Sequence[int] | None = None,
        num_scales: int = 12,
        scale_step_ratio: float = 2.0 / 7.0,
        window_size: int | None = None,
        step_size: int | None = None,
        pre_filter_ratio: float = 0.0,
        theta: float = 0.0,
        pool: str = "mean",
        smooth: bool = True,
        use_softmax_scores: bool = True,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        if not (isinstance(base_method, type) and issubclass(base_method, BaseCAM)):
            raise TypeError(f"base_method must be a CAM class such as GradCAM; got {base_method!r}")
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max'; got {pool!r}")
        if not 0.0 <= pre_filter_ratio < 1.0:
            raise ValueError(f"pre_filter_ratio must be in [0, 1); got {pre_filter_ratio!r}")
        num_scales = positive_int(num_scales, "num_scales")
        batch_size = positive_int(batch_size, "batch_size")
        if window_size is not None:
            window_size = positive_int(window_size, "window_size")
        if step_size is not None:
            step_size = positive_int(step_size, "step_size")
        self.base_cam = base_method(model, target_layers, reshape_transform=reshape_transform, **kwargs)
        self.model = model
        self.scales = None if scales is None else [int(scale) for scale in scales]
        self.num_scales = num_scales
        self.scale_step_ratio = float(scale_step_ratio)
        self.window_size = window_size
        self.step_size = step_size
        self.pre_filter_ratio = float(pre_filter_ratio)
        self.theta = float(theta)
        self.pool = pool
        self.smooth = bool(smooth)
        self.use_softmax_scores = bool(use_softmax_scores)
        self.batch_size = batch_size

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """``(B, H, W)`` float32 maps in [0, 1] (arguments as :meth:`BaseCAM.__call__`)."""
        return self.forward(input_tensor, targets, eigen_smooth)

    def forward(
        self,
        input_tensor: torch.Tensor,
        targets: Sequence[Target | int] | int | None = None,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """As :meth:`__call__` (the 1.5.x name)."""
        input_tensor = check_input_tensor(input_tensor)
        if input_tensor.dim() != 4:
            raise ValueError(f"SESS works on 2-D images (B, C, H, W); got shape {tuple(input_tensor.shape)}")
        resolved = as_targets(targets, input_tensor.shape[0])
        device, dtype = model_device_and_dtype(self.model)
        input_tensor = input_tensor.detach().to(device=device, dtype=dtype or input_tensor.dtype)
        maps = [
            self._single_image(
                input_tensor[i : i + 1], None if resolved is None else resolved[i], eigen_smooth
            )
            for i in range(input_tensor.shape[0])
        ]
        return CF.scale_to_unit(torch.stack(maps)).cpu().numpy()

    def get_scales(self, window_size: int) -> list[int]:
        """The shorter-side sizes the image is resized to."""
        if self.scales is not None:
            return self.scales
        step = int(round(window_size * self.scale_step_ratio))
        return [window_size + step * index for index in range(self.num_scales)]

    def _scores(self, patches: torch.Tensor, target: Target) -> torch.Tensor:
        """``(N,)`` float64 scores of the target on the patches, clipped at 0, on the CPU (one
        number per patch; MPS has no float64)."""
        scores = []
        with model_in_eval_mode(self.model), torch.no_grad():
            for start in range(0, patches.shape[0], self.batch_size):
                outputs = self.model(patches[start : start + self.batch_size])
                if self.use_softmax_scores:
                    outputs = torch.softmax(classifier_logits(outputs), dim=-1)
                count = min(self.batch_size, patches.shape[0] - start)
                scores.append(target_scores([target] * count, outputs, count).double().cpu())
        return torch.cat(scores).clamp_min(0)

    def _single_image(self, image: torch.Tensor, target: Target | None, eigen_smooth: bool) -> torch.Tensor:
        height, width = image.shape[-2:]
        window = self.window_size if self.window_size is not None else min(height, width)
        step = self.step_size if self.step_size is not None else window
        if target is None:  # the image's top class, as the base method would pick it
            with model_in_eval_mode(self.model), torch.no_grad():
                target = self.base_cam.default_targets(self.model(image))[0]
        patches, places = [], []
        for scale in self.get_scales(window):
            if scale < window:
                raise ValueError(f"every scale must be at least the window size {window}; got {scale}")
            scaled = resize_shorter_side(image, scale)
            scaled_height, scaled_width = scaled.shape[-2:]
            if min(scaled_height, scaled_width) < window:
                raise ValueError(f"the window size {window} is larger than the image at scale {scale}")
            for x, y in sliding_window(scaled_height, scaled_width, step, window):
                patches.append(scaled[:, :, y : y + window, x : x + window])
                places.append((x, y, scaled_width, scaled_height))
        patches = torch.cat(patches)
        scores = self._scores(patches, target)
        order = torch.argsort(scores, stable=True)[int(len(scores) * self.pre_filter_ratio) :]
        best = scores[order[-1]]
        weights = scores[order] / best if best > 0 else torch.ones(len(order), dtype=torch.float64)
        pasted = []
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            cams = self.base_cam.compute(patches[chosen], [target] * len(chosen), eigen_smooth=eigen_smooth)
            for cam, weight, index in zip(cams, weights[start : start + self.batch_size], chosen.tolist()):
                x, y, scaled_width, scaled_height = places[index]
                canvas = cam.new_zeros(scaled_height, scaled_width)
                canvas[y : y + window, x : x + window] = cam * float(weight)
                pasted.append(CF.resize_cams(canvas[None], (height, width))[0])
        fused = fuse_patch_maps(torch.stack(pasted), self.pool, self.theta)
        if not self.smooth:
            return fused
        return CF.gaussian_blur(fused[None, None], BLUR_SIGMA, BLUR_SIZE, border="reflect")[0, 0]
