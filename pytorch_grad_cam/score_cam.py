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
    so memory does not grow with the number of channels; by default as many at a time as the call
    has images, so a masked forward is no larger than the call's own forward. An image's last pass
    is padded to ``batch_size`` (its last masked input repeated, the extra scores dropped), so every
    masked forward has the same shape (:func:`pad_batch`).

    Args:
        model, *args, **options: :class:`~pytorch_grad_cam.base_cam.BaseCAM`'s arguments
            (``target_layers``, ``reshape_transform``, ``device``, ``layer_call``, ...).
        batch_size: masked inputs per forward pass (also settable later: ``cam.batch_size = 64``);
            None (default): the input's batch size
            (:func:`~pytorch_grad_cam._core.perturbation.inputs_per_pass`). Larger is faster on
            a GPU and costs ``batch_size / B`` times the forward's memory.
        progress: show a tqdm bar on stderr; None (default) shows it only when stderr is a terminal.

    Attributes:
        masks_scored: how many masked inputs the last call ran through the model (after
            de-duplication, over every image, layer, noise sample and ``aug_smooth`` view; the
            padding rows of a last pass not counted).
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        *args: Any,
        batch_size: int | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, *args, **options)
        self.batch_size = batch_size
        self.progress = check_progress(progress)
        self.masks_scored = 0

    @property
    def batch_size(self) -> int | None:
        """Masked inputs per forward pass; None: the input's batch size."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        self._batch_size = None if value is None else positive_int(value, "batch_size")

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
            per_pass = P.inputs_per_pass(self.batch_size, batch)
            steps = sum(math.ceil(first.numel() * samples / per_pass) for first, _ in groups)
            scores = torch.empty(batch, channels, dtype=torch.float32, device=activations.device)
            with progress_bar(steps, type(self).__name__, self.progress) as bar:
                for index, (first, inverse) in enumerate(groups):
                    distinct = self._distinct_scores(
                        input_tensor[index : index + 1],
                        targets[index],
                        activations[index][first],
                        bar,
                        per_pass,
                    )
                    scores[index] = distinct[inverse]
        return scores.clone()

    def _distinct_scores(
        self, image: torch.Tensor, target: Target, sources: torch.Tensor, bar: Any, per_pass: int
    ) -> torch.Tensor:
        """Score the masks of ``sources`` ``(U, *s)`` on one image, ``per_pass`` masked inputs per
        forward: ``(U,)`` means over the samples."""
        distinct = sources.shape[0]
        samples = self._num_samples()
        device = sources.device
        job_channel = torch.arange(distinct, device=device).repeat(samples)
        job_sample = torch.arange(samples, device=device).repeat_interleave(distinct)
        totals = torch.zeros(distinct, dtype=torch.float32, device=device)
        size = image.shape[2:]
        state = self._image_state(image)
        for start in range(0, job_channel.numel(), per_pass):
            chunk = job_channel[start : start + per_pass]
            masks = self._masks(sources[chunk], size).to(image.dtype)
            inputs = self._masked_inputs(image, masks, job_sample[start : start + per_pass], state)
            count = inputs.shape[0]
            inputs = pad_batch(inputs, per_pass)
            outputs = self.model(inputs)
            scores = target_scores([target] * inputs.shape[0], outputs, inputs.shape[0])[:count]
            totals.index_add_(0, chunk, scores.to(device))
            self.masks_scored += count
            bar.update(1)
        return totals / samples


def pad_batch(inputs: torch.Tensor, size: int) -> torch.Tensor:
    """``(k, ...)`` inputs with their last row repeated up to ``(size, ...)`` (as they are when
    ``k >= size``).

    Every masked forward of a call then has the same batch size, the call's own forward's by
    default. On CPU each new input shape a convolution sees leaves cached state in the process
    (about 0.9 MB per shape for resnet50, kept after the call): an image's last, partial pass would
    otherwise add a shape per distinct remainder, up to ``size - 1`` of them per call
    (docs/memory.md). The padded rows' scores are dropped.
    """
    missing = size - inputs.shape[0]
    if missing <= 0:
        return inputs
    return torch.cat([inputs, inputs[-1:].expand(missing, *inputs.shape[1:])])
