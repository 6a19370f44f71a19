"""IS-CAM (Integrated Score-CAM), as torchcam 0.5 defines it."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam._core.validation import positive_int
from pytorch_grad_cam.score_cam import ScoreCAM


def iscam_coefficients(num_samples: int) -> list[float]:
    """torchcam's IS-CAM input scales: ``c_i = sum_{j=1..i} j / n`` for ``i = 1..n``.

    (They are cumulative, so they pass 1: ``c_n = (n + 1) / 2``.)
    """
    coefficients, total = [], 0.0
    for step in range(num_samples):
        total += (step + 1) / num_samples
        coefficients.append(total)
    return coefficients


class ISCAM(ScoreCAM):
    """IS-CAM: Score-CAM with each mask scored at several input scales, the scores averaged.

    Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based explanations",
    https://arxiv.org/abs/2010.03023 (as torchcam 0.5 implements it).

    ``N_k = U(norm(A_k))`` as in :class:`~pytorch_grad_cam.sscam.SSCAM`;
    ``s_k = (1/n) sum_i score(c_i * (x * N_k))`` with the scales ``c_i`` of
    :func:`iscam_coefficients`; ``w = softmax_k(s)``; ``CAM = relu(sum_k w_k A_k)``.
    Channels with the same normalised activations are scored once.

    Args:
        model, *args, batch_size, progress, **options: as for
            :class:`~pytorch_grad_cam.score_cam.ScoreCAM`.
        num_samples: integration steps (torchcam: 10).
    """

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        batch_size: int = 32,
        num_samples: int = 10,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, *args, batch_size=batch_size, progress=progress, **options)
        self.num_samples = positive_int(num_samples, "num_samples")

    def _num_samples(self) -> int:
        return self.num_samples

    def _mask_keys(self, channels: torch.Tensor) -> torch.Tensor | None:
        return P.torchcam_normalize(channels)

    def _masks(self, channels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return P.upsample(P.torchcam_normalize(channels), size, align_corners=False)

    def _masked_inputs(
        self, image: torch.Tensor, masks: torch.Tensor, samples: torch.Tensor, state: Any
    ) -> torch.Tensor:
        scales = torch.tensor(iscam_coefficients(self.num_samples), dtype=masks.dtype, device=masks.device)
        scale = scales[samples].reshape(-1, *([1] * (masks.dim())))
        return scale * (masks.unsqueeze(1) * image)
