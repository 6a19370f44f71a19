"""SS-CAM (Smoothed Score-CAM), as torchcam 0.5 defines it."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam._core.validation import check_seed, positive_int
from pytorch_grad_cam.score_cam import ScoreCAM


class SSCAM(ScoreCAM):
    """SS-CAM: Score-CAM with Gaussian noise on the masks, the scores averaged over samples.

    Wang et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature Localization",
    https://arxiv.org/abs/2006.14255 (the mask-noise variant, as torchcam 0.5 implements it).

    ``N_k = U(norm(A_k))`` with ``norm(a) = (a - min) / (max(a - min) + 1e-8)`` at the layer's
    resolution and ``U`` the (bi/tri)linear upsampling (``align_corners=False``);
    ``s_k = (1/n) sum_i score(x * (N_k + d_ik))`` with ``d_ik ~ Normal(0, std^2)`` per pixel;
    ``w = softmax_k(s)``; ``CAM = relu(sum_k w_k A_k)``. (torchcam subtracts the unmasked score
    from every ``s_k``; a softmax does not change when a constant is subtracted.)

    With ``seed=None`` the noise comes from torch's global generator of the model's device (seed it
    with ``torch.manual_seed``); with an int ``seed`` every image's noise comes from a generator
    seeded with it, so an image gets the same noise alone or in a batch. Each image's noise is
    drawn sample by sample, ``(C, *S)`` at a time when ``batch_size >= C`` (else in ``batch_size``
    pieces, so the draws then depend on it); with one image and one target layer that is
    torchcam's order, and the same seed gives torchcam's numbers.

    Args:
        model, *args, batch_size, progress, **options: as for
            :class:`~pytorch_grad_cam.score_cam.ScoreCAM`.
        num_samples: noise samples per channel (torchcam: 35).
        std: standard deviation of the noise (torchcam: 2.0).
        seed: None (torch's global generator, as torchcam) or an int (a generator per image).
    """

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        batch_size: int = 32,
        num_samples: int = 35,
        std: float = 2.0,
        seed: int | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, *args, batch_size=batch_size, progress=progress, **options)
        self.num_samples = positive_int(num_samples, "num_samples")
        if isinstance(std, bool) or not isinstance(std, numbers.Real):
            raise TypeError(f"std must be a number >= 0; got {std!r}")
        if not float(std) >= 0:
            raise ValueError(f"std must be a number >= 0; got {std!r}")
        self.std = float(std)
        self.seed = check_seed(seed)

    def _num_samples(self) -> int:
        return self.num_samples

    def _mask_keys(self, channels: torch.Tensor) -> torch.Tensor | None:
        return None  # every channel gets its own noise

    def _masks(self, channels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return P.upsample(P.torchcam_normalize(channels), size, align_corners=False)

    def _image_state(self, image: torch.Tensor) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=image.device).manual_seed(self.seed)

    def _masked_inputs(
        self, image: torch.Tensor, masks: torch.Tensor, samples: torch.Tensor, state: Any
    ) -> torch.Tensor:
        # One draw per noise sample in the chunk, in order: the same numbers as drawing each
        # sample's noise for all channels at once whenever a sample's channels share a chunk.
        _, counts = torch.unique_consecutive(samples, return_counts=True)
        noise = torch.cat(
            [
                torch.randn(
                    (count, *masks.shape[1:]), generator=state, dtype=masks.dtype, device=masks.device
                )
                for count in counts.tolist()
            ]
        )
        return (masks + noise * self.std).unsqueeze(1) * image
