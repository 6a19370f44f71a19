"""ROAD: RemOve And Debias (Rong et al., ICML 2022, https://arxiv.org/abs/2202.00449).

ROAD removes pixels in the order a CAM ranks them and fills them by *noisy linear imputation*:
every removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct
neighbours, 1/12 for the diagonals, renormalised at the image border) plus Gaussian noise. The
filled values depend on each other, so all of an image's removed pixels are found at once from
one sparse linear system ``L v = b``: for a removed pixel ``i`` with in-image neighbours ``N(i)``
and weights ``w``::

    (sum_{j in N(i)} w_ij) v_i - sum_{j in N(i), removed} w_ij v_j = sum_{j in N(i), kept} w_ij x_j

``L`` is symmetric positive definite whenever at least one pixel is kept; it is factorised once
per image (scipy's SuperLU) and solved for all channels together. The imputation hides the shape
of the removed region from the model, so the score measures what the removed *values* carried.

- MoRF (most relevant first): remove the top of the map; a faithful CAM makes the score drop.
- LeRF (least relevant first): remove the bottom of the map; a faithful CAM keeps the score.
- ``ROADCombined``: ``(mean LeRF change - mean MoRF change) / 2`` over the percentiles; higher
  is better.

Names, defaults and return values follow pytorch-grad-cam 1.5.x; ``noise``, ``generator`` and
``batch_size`` are additional keyword-only options.
"""

from __future__ import annotations

import functools
import numbers
from typing import Sequence, Tuple

import numpy as np
import torch
from torch import nn

from pytorch_grad_cam._core.validation import Target, positive_int
from pytorch_grad_cam.metrics.perturbation_confidence import (
    DEFAULT_PERCENTILES,
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
    perturbation_scores,
)
from pytorch_grad_cam.metrics.scoring import DEFAULT_BATCH_SIZE, check_percentiles, to_numpy

#: ``((dy, dx), weight)``: the neighbours of the ROAD paper's linear imputation.
Weighting = Sequence[Tuple[Tuple[int, int], float]]

neighbors_weights: tuple[tuple[tuple[int, int], float], ...] = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)


def _check_weighting(weighting: object) -> tuple[tuple[tuple[int, int], float], ...]:
    error = TypeError(
        "weighting must be a list of ((dy, dx), weight) pairs with int offsets and positive weights, "
        "like neighbors_weights"
    )
    if isinstance(weighting, (str, bytes)) or not isinstance(weighting, Sequence) or len(weighting) == 0:
        raise error
    checked = []
    for entry in weighting:
        try:
            (dy, dx), weight = entry
        except (TypeError, ValueError):
            raise error from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (dy, dx)):
            raise error
        if not isinstance(weight, numbers.Real) or isinstance(weight, bool):
            raise error
        if (dy, dx) == (0, 0) or not weight > 0:
            raise ValueError(
                f"weighting entry {entry!r}: the offset must not be (0, 0) and the weight must be > 0"
            )
        checked.append(((int(dy), int(dx)), float(weight)))
    return tuple(checked)


def linear_imputation_system(
    keep: torch.Tensor, image: torch.Tensor, weighting: Weighting = neighbors_weights
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sparse system ``L v = b`` of the linear imputation (see the module docstring).

    Args:
        keep: ``(H, W)`` bool, True for the kept pixels.
        image: ``(C, H, W)`` values (only the kept ones are read).
        weighting: the neighbour offsets and weights.

    Returns:
        ``removed`` (N,) the flat indices of the removed pixels (row-major), in the order of the
        unknowns; ``indices`` (2, nnz) and ``values`` (nnz,) float64, the COO entries of the
        ``(N, N)`` matrix ``L`` (diagonal included); ``rhs`` (N, C) float64.
    """
    height, width = keep.shape
    keep_flat = keep.reshape(-1)
    pixels = image.reshape(image.shape[0], -1).to(torch.float64)
    removed = torch.nonzero(~keep_flat).reshape(-1)
    count = removed.numel()
    unknown_id = torch.full((keep_flat.numel(),), -1, dtype=torch.long)
    unknown_id[removed] = torch.arange(count)
    rows, cols = removed // width, removed % width
    diagonal = torch.zeros(count, dtype=torch.float64)
    rhs = torch.zeros(count, image.shape[0], dtype=torch.float64)
    entry_rows, entry_cols, entry_values = [], [], []
    for (dy, dx), weight in weighting:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        eq = torch.nonzero(inside).reshape(-1)
        neighbour = r[inside] * width + c[inside]
        diagonal[eq] += weight
        known = keep_flat[neighbour]
        rhs.index_add_(0, eq[known], weight * pixels[:, neighbour[known]].T)
        entry_rows.append(eq[~known])
        entry_cols.append(unknown_id[neighbour[~known]])
        entry_values.append(torch.full((int((~known).sum()),), -weight, dtype=torch.float64))
    diag_ids = torch.arange(count)
    indices = torch.stack([torch.cat([*entry_rows, diag_ids]), torch.cat([*entry_cols, diag_ids])])
    values = torch.cat([*entry_values, diagonal])
    return removed, indices, values, rhs


def _is_symmetric(weighting: Weighting) -> bool:
    table = dict(weighting)
    return all(table.get((-dy, -dx)) == weight for (dy, dx), weight in weighting)


def solve_sparse(
    indices: torch.Tensor, values: torch.Tensor, rhs: torch.Tensor, symmetric: bool = True
) -> torch.Tensor:
    """Solve ``L v = rhs`` for a sparse ``(N, N)`` matrix given by COO entries (scipy SuperLU).

    Args:
        indices: ``(2, nnz)`` row/column indices (duplicates are summed).
        values: ``(nnz,)`` float64 entries.
        rhs: ``(N, C)`` float64 right-hand sides.
        symmetric: ``L`` is symmetric positive definite: use the symmetric ordering and no
            pivoting (much less fill-in).

    Returns:
        ``(N, C)`` float64 solution.

    Raises:
        ValueError: the matrix is singular (removed pixels that no kept pixel reaches).
        ImportError: SciPy is not installed (the "metrics" extra).
    """
    try:  # SciPy is the "metrics" extra, not a requirement: only this solver needs it
        import scipy.sparse
        import scipy.sparse.linalg
    except ImportError as error:
        raise ImportError(
            'the ROAD metric solves its imputation with SciPy: pip install "gradcam[metrics]" (or scipy)'
        ) from error
    count = rhs.shape[0]
    matrix = scipy.sparse.csc_matrix(
        (values.numpy(), (indices[0].numpy(), indices[1].numpy())), shape=(count, count)
    )
    options = (
        {"permc_spec": "MMD_AT_PLUS_A", "diag_pivot_thresh": 0.0, "options": {"SymmetricMode": True}}
        if symmetric
        else {}
    )
    try:
        factor = scipy.sparse.linalg.splu(matrix, **options)
    except RuntimeError as error:
        raise ValueError(
            "the imputation system is singular: some removed pixels have no path to a kept pixel "
            "through the weighting's offsets"
        ) from error
    return torch.from_numpy(np.asarray(factor.solve(rhs.numpy())).reshape(count, -1))


class NoisyLinearImputer:
    """ROAD's noisy linear imputation of the removed pixels of one image.

    Each removed pixel becomes the weighted mean of its in-image neighbours (solved jointly, see
    the module docstring), plus ``noise * N(0, 1)``. When every pixel is removed the system has
    no unique solution; its minimum-norm one, 0, is used (plus the noise).

    Args:
        noise: standard deviation of the added Gaussian noise (0: none).
        weighting: the neighbours' ``((dy, dx), weight)``; default :data:`neighbors_weights`.
        generator: the ``torch.Generator`` (CPU) the noise is drawn from; default: torch's global
            generator, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(
        self,
        noise: float = 0.01,
        weighting: Weighting = neighbors_weights,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not noise >= 0:
            raise ValueError(f"noise must be a number >= 0; got {noise!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
        self.noise = float(noise)
        self.weighting = _check_weighting(weighting)
        self.generator = generator
        self._symmetric = _is_symmetric(self.weighting)

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Impute one image.

        Args:
            img: ``(C, H, W)`` image.
            mask: ``(H, W)``, 1 (``> 0.5``) for the pixels to keep, 0 for those to impute.

        Returns:
            ``(C, H, W)`` image of ``img``'s dtype and device: the kept pixels unchanged.
        """
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"NoisyLinearImputer imputes one 2-D image (C, H, W); got {shape}")
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(img.shape[1:]):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask must be an (H, W) tensor of the image's size {tuple(img.shape[1:])}; got {shape}"
            )
        image = img.detach().cpu()
        keep = mask.detach().cpu() > 0.5
        channels = image.shape[0]
        removed, indices, values, rhs = linear_imputation_system(keep, image, self.weighting)
        if removed.numel() == 0:
            return img.clone()
        dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
        if bool(keep.any()):
            filled = solve_sparse(indices, values, rhs, self._symmetric).to(dtype)
        else:
            filled = torch.zeros(removed.numel(), channels, dtype=dtype)
        imputed = filled.T
        if self.noise > 0:
            # One (C, N) draw per image: with the same seed, the same numbers as 1.5.x.
            imputed = imputed + self.noise * torch.randn(imputed.shape, generator=self.generator)
        result = image.reshape(channels, -1).clone()
        result[:, removed] = imputed.to(result.dtype)
        return result.reshape(image.shape).to(device=img.device, dtype=img.dtype)

    def __repr__(self) -> str:
        return f"NoisyLinearImputer(noise={self.noise})"


def _check_images(input_tensor: object) -> None:
    """ROAD imputes 2-D images: reject anything but ``(B, C, H, W)`` before the model runs."""
    if isinstance(input_tensor, torch.Tensor) and input_tensor.dim() != 4:
        raise ValueError(
            "ROAD's linear imputation works on 2-D images: input_tensor must be (B, C, H, W); "
            f"got shape {tuple(input_tensor.shape)}"
        )


class _ROADSingle(PerturbationConfidenceMetric):
    def check_images(self, input_tensor: torch.Tensor) -> None:
        _check_images(input_tensor)


class _ROADAverage(AveragerAcrossThresholds):
    def check_images(self, input_tensor: torch.Tensor) -> None:
        _check_images(input_tensor)


class ROADMostRelevantFirst(_ROADSingle):
    """ROAD MoRF at one percentile: the score change after imputing the map's top ``100 - percentile`` %.

    Lower (a larger drop) is better.

    Args:
        percentile: pixels at or above this percentile of the CAM are removed (``'auto'``: the
            upper Otsu class).
        noise: the imputation noise's standard deviation.
        generator: the noise's ``torch.Generator``; default torch's global one.
        batch_size: imputed images per forward pass.
    """

    def __init__(
        self,
        percentile: float | str = 80,
        *,
        noise: float = 0.01,
        generator: torch.Generator | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        imputer = NoisyLinearImputer(noise, generator=generator)
        super().__init__(RemoveMostRelevantFirst(percentile, imputer), batch_size=batch_size)


class ROADLeastRelevantFirst(_ROADSingle):
    """ROAD LeRF at one percentile: the score change after imputing all but the map's top ``percentile`` %.

    Higher (a smaller drop) is better.

    Args:
        percentile: pixels whose ``1 - cam`` is at or above this percentile are removed, i.e.
            ``percentile=20`` keeps the top 20 % of the map.
        noise, generator, batch_size: as :class:`ROADMostRelevantFirst`.
    """

    def __init__(
        self,
        percentile: float | str = 20,
        *,
        noise: float = 0.01,
        generator: torch.Generator | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        imputer = NoisyLinearImputer(noise, generator=generator)
        super().__init__(RemoveLeastRelevantFirst(percentile, imputer), batch_size=batch_size)


class ROADMostRelevantFirstAverage(_ROADAverage):
    """:class:`ROADMostRelevantFirst` averaged over ``percentiles`` (one shared batched pass)."""

    def __init__(
        self,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        *,
        noise: float = 0.01,
        generator: torch.Generator | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        options = {"noise": noise, "generator": generator, "batch_size": batch_size}
        factory = functools.partial(ROADMostRelevantFirst, **options)
        super().__init__(factory, percentiles, batch_size=batch_size)


class ROADLeastRelevantFirstAverage(_ROADAverage):
    """:class:`ROADLeastRelevantFirst` averaged over ``percentiles`` (one shared batched pass)."""

    def __init__(
        self,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        *,
        noise: float = 0.01,
        generator: torch.Generator | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        options = {"noise": noise, "generator": generator, "batch_size": batch_size}
        factory = functools.partial(ROADLeastRelevantFirst, **options)
        super().__init__(factory, percentiles, batch_size=batch_size)


class ROADCombined:
    """``(LeRF average - MoRF average) / 2`` per image: higher is better.

    Both orders' imputed images go through the model in shared batches (the LeRF ones first,
    then the MoRF ones, percentile by percentile, as 1.5.x draws its noise).

    Args:
        percentiles: the percentiles of both averages.
        noise, generator, batch_size: as :class:`ROADMostRelevantFirst`.
    """

    def __init__(
        self,
        percentiles: Sequence[float] = DEFAULT_PERCENTILES,
        *,
        noise: float = 0.01,
        generator: torch.Generator | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.percentiles = check_percentiles(percentiles)
        self.batch_size = positive_int(batch_size, "batch_size")
        options = {"noise": noise, "generator": generator, "batch_size": batch_size}
        self.morf_averager = ROADMostRelevantFirstAverage(self.percentiles, **options)
        self.lerf_averager = ROADLeastRelevantFirstAverage(self.percentiles, **options)

    def __call__(
        self,
        input_tensor: torch.Tensor,
        cams: np.ndarray | torch.Tensor,
        targets: Sequence[Target | int] | None,
        model: nn.Module,
    ) -> np.ndarray:
        """``(B,)`` float32 combined scores (arguments as :class:`PerturbationConfidenceMetric`)."""
        _check_images(input_tensor)
        lerf = self.lerf_averager.perturbations()
        morf = self.morf_averager.perturbations()
        scores, _ = perturbation_scores(
            input_tensor, cams, targets, model, [*lerf, *morf], batch_size=self.batch_size
        )
        count = len(lerf)
        return to_numpy((scores[:count].mean(dim=0) - scores[count:].mean(dim=0)) / 2)
