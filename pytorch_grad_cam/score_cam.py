"""ScoreCAM, and the masked-input scoring that SS-CAM and IS-CAM share with it."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam._core.progress import check_progress, progress_bar
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam._core.validation import Target, positive_int
from pytorch_grad_cam.base_cam import BaseCAM


class ScoreCAM(BaseCAM):
    """Score-CAM: each activation channel, as a mask on the input, is scored by the model.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR Workshops 2020, https://arxiv.org/abs/1910.01279

    ``M_k = (U(A_k) - min) / (max - min + 1e-8)`` with ``U`` the (bi/tri)linear upsampling to the
    input size (``align_corners=True``), ``s_k = score of the target on model(x * M_k)``,
    ``w = softmax_k(s)`` and ``CAM = relu(sum_k w_k A_k)``.

    Channels with identical activations give identical masks: each distinct mask is scored once
    (all-zero channels, common after a ReLU, cost one forward together). The masked inputs are
    built and run ``batch_size`` at a time on the model's device under ``torch.inference_mode()``,
    so memory does not grow with the number of channels.

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        batch_size: masked inputs per forward pass (also settable later: ``cam.batch_size = 64``).
        progress: show a tqdm bar on stderr; None (default) shows it only when stderr is a terminal.

    Attributes:
        masks_scored: how many masked inputs the last call ran through the model (after
            de-duplication, over every image, layer, noise sample and ``aug_smooth`` view).
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        batch_size: int = 32,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, *args, **options)
        self.batch_size = batch_size
        self.progress = check_progress(progress)
        self.masks_scored = 0

    @property
    def batch_size(self) -> int:
        """Masked inputs per forward pass."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = positive_int(value, "batch_size")

    def start_call(self, *, eigen_smooth: bool) -> None:
        self.masks_scored = 0

    # -- what SS-CAM and IS-CAM change ---------------------------------------------------------

    def _num_samples(self) -> int:
        """How many times each mask is scored (noise samples, integration steps)."""
        return 1

    def _mask_keys(self, channels: torch.Tensor) -> torch.Tensor | None:
        """Channels whose keys are equal give equal masked inputs; None scores every channel."""
        return channels

    def _masks(self, channels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``(k, *s)`` channels to ``(k, *size)`` masks."""
        return P.score_cam_masks(channels, size)

    def _image_state(self, image: torch.Tensor) -> Any:
        """Whatever :meth:`_masked_inputs` needs for one image (SS-CAM: its noise generator)."""
        return None

    def _masked_inputs(
        self, image: torch.Tensor, masks: torch.Tensor, samples: torch.Tensor, state: Any
    ) -> torch.Tensor:
        """``(1, C_in, *S)`` image and ``(k, *S)`` masks (of sample numbers ``samples``) to a batch."""
        return image * masks.unsqueeze(1)

    # -- the shared machinery -------------------------------------------------------------------

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        targets: list[Target] | None,
        activations: torch.Tensor,
        grads: torch.Tensor | None,
    ) -> torch.Tensor:
        return torch.softmax(self.channel_scores(input_tensor, targets, activations), dim=1)

    def channel_scores(
        self, input_tensor: torch.Tensor, targets: list[Target], activations: torch.Tensor
    ) -> torch.Tensor:
        """The mean target score of each channel's masked input(s).

        Args:
            input_tensor: ``(B, C_in, *S)``.
            targets: one per image.
            activations: ``(B, C, *s)``.

        Returns:
            ``(B, C)`` float32 scores.
        """
        batch, channels = activations.shape[:2]
        samples = self._num_samples()
        with torch.inference_mode():
            groups = []
            for index in range(batch):
                keys = self._mask_keys(activations[index])
                if keys is None:
                    every = torch.arange(channels, device=activations.device)
                    groups.append((every, every))
                else:
                    groups.append(P.unique_rows(keys))
            steps = sum(math.ceil(first.numel() * samples / self.batch_size) for first, _ in groups)
            scores = torch.empty(batch, channels, dtype=torch.float32, device=activations.device)
            with progress_bar(steps, type(self).__name__, self.progress) as bar:
                for index, (first, inverse) in enumerate(groups):
                    distinct = self._distinct_scores(
                        input_tensor[index : index + 1], targets[index], activations[index][first], bar
                    )
                    scores[index] = distinct[inverse]
        return scores.clone()

    def _distinct_scores(
        self, image: torch.Tensor, target: Target, sources: torch.Tensor, bar: Any
    ) -> torch.Tensor:
        """Score the masks of ``sources`` ``(U, *s)`` on one image: ``(U,)`` means over the samples."""
        distinct = sources.shape[0]
        samples = self._num_samples()
        device = sources.device
        job_channel = torch.arange(distinct, device=device).repeat(samples)
        job_sample = torch.arange(samples, device=device).repeat_interleave(distinct)
        totals = torch.zeros(distinct, dtype=torch.float32, device=device)
        size = image.shape[2:]
        state = self._image_state(image)
        for start in range(0, job_channel.numel(), self.batch_size):
            chunk = job_channel[start : start + self.batch_size]
            masks = self._masks(sources[chunk], size).to(image.dtype)
            inputs = self._masked_inputs(image, masks, job_sample[start : start + self.batch_size], state)
            count = inputs.shape[0]
            outputs = self.model(inputs)
            totals.index_add_(0, chunk, target_scores([target] * count, outputs, count).to(device))
            self.masks_scored += count
            bar.update(1)
        return totals / samples
