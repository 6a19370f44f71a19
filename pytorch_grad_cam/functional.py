"""Pure torch functions for the CAM math: channel weights, reductions, normalisation, resizing.

Every function here takes and returns tensors, has no hooks and no state, and works for 2-D
maps ``(B, C, h, w)`` and 3-D volumes ``(B, C, d, h, w)`` alike: the spatial axes are all axes
after the channel axis.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

#: Added to the GradCAM++ denominator (the reference library's value).
GRADCAM_PLUSPLUS_EPS = 1e-6
#: Added to the XGradCAM denominator (the reference library's value).
XGRADCAM_EPS = 1e-7
#: Added to the maximum when a CAM is scaled to [0, 1] (the reference library's value).
SCALE_EPS = 1e-7


def spatial_dims(tensor: torch.Tensor) -> tuple[int, ...]:
    """The spatial axes of a ``(B, C, *spatial)`` tensor, e.g. ``(2, 3)`` for 4-D input."""
    return tuple(range(2, tensor.dim()))


def expand_weights(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """Reshape channel weights ``(B, C)`` so they broadcast against ``(B, C, *spatial)``.

    Per-position weights that already have the activations' rank are returned unchanged.
    """
    if weights.dim() == activations.dim():
        return weights
    if weights.dim() != 2:
        raise ValueError(
            f"weights must have shape (B, C) or the activations' shape {tuple(activations.shape)}; "
            f"got {tuple(weights.shape)}"
        )
    return weights.reshape(*weights.shape, *([1] * (activations.dim() - 2)))


def grad_cam_weights(grads: torch.Tensor) -> torch.Tensor:
    """GradCAM channel weights: the mean gradient over positions.

    Args:
        grads: ``(B, C, *spatial)`` gradients of the target score.

    Returns:
        ``(B, C)`` weights ``w_c = mean_ij G_cij``.
    """
    return grads.mean(dim=spatial_dims(grads))


def grad_cam_plusplus_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAM++ channel weights, with the exponential-score approximation of the paper.

    ``a = G^2 / (2 G^2 + (sum_ij A) G^3 + eps)`` (0 where ``G == 0``) and
    ``w_c = sum_ij relu(G) a``.

    Args:
        activations: ``(B, C, *spatial)`` target layer activations.
        grads: ``(B, C, *spatial)`` gradients of the target score.

    Returns:
        ``(B, C)`` weights.
    """
    dims = spatial_dims(grads)
    grads_2 = grads * grads
    grads_3 = grads_2 * grads
    sum_activations = activations.sum(dim=dims, keepdim=True)
    alpha = grads_2 / (2 * grads_2 + sum_activations * grads_3 + GRADCAM_PLUSPLUS_EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (torch.relu(grads) * alpha).sum(dim=dims)


def xgrad_cam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """XGradCAM channel weights: gradients weighted by the normalised activations.

    ``w_c = sum_ij G_cij A_cij / (sum_ij A_cij + eps)``.

    Args:
        activations: ``(B, C, *spatial)`` target layer activations.
        grads: ``(B, C, *spatial)`` gradients of the target score.

    Returns:
        ``(B, C)`` weights.
    """
    dims = spatial_dims(grads)
    sum_activations = activations.sum(dim=dims, keepdim=True)
    return (grads * activations / (sum_activations + XGRADCAM_EPS)).sum(dim=dims)


def layer_cam_weights(grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM per-position weights ``relu(G)``, shape ``(B, C, *spatial)``."""
    return torch.relu(grads)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """The channel sum ``sum_c w_c A_c``.

    Args:
        weights: ``(B, C)`` channel weights or ``(B, C, *spatial)`` per-position weights.
        activations: ``(B, C, *spatial)``.

    Returns:
        ``(B, *spatial)``.
    """
    if weights.dim() == 2:
        return torch.einsum("bc,bc...->b...", weights, activations)
    return (weights * activations).sum(dim=1)


def first_principal_component(activations: torch.Tensor) -> torch.Tensor:
    """Project each image's activations on their first principal component.

    For every image the ``(positions, C)`` matrix is centred over positions and projected on
    its first right singular vector, computed for the whole batch by one reduced SVD. The sign of
    a principal component is arbitrary; it is fixed so that the projection's entry of largest
    magnitude is positive (the first such entry on a tie). NaNs are treated as 0, as the reference
    library does, and an all-constant input gives an all-zero projection.

    Args:
        activations: ``(B, C, *spatial)``.

    Returns:
        ``(B, *spatial)`` projections.
    """
    batch, channels = activations.shape[:2]
    spatial = activations.shape[2:]
    matrix = torch.nan_to_num(activations, nan=0.0).reshape(batch, channels, -1).transpose(1, 2)
    matrix = matrix - matrix.mean(dim=1, keepdim=True)
    # X = U S Vh, so the projection X Vh[0] equals S[0] U[:, 0]; the reduced SVD of the smaller
    # side gives both without forming a C x C matrix.
    u, s, _ = torch.linalg.svd(matrix, full_matrices=False)
    projection = u[:, :, 0] * s[:, :1]
    largest = projection.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(projection.gather(1, largest))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (projection * sign).reshape(batch, *spatial)


def scale_to_unit(cams: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map: ``(x - min) / (max(x - min) + 1e-7)``, per image.

    Args:
        cams: ``(B, *spatial)``.

    Returns:
        ``(B, *spatial)`` with values in [0, 1); an all-constant map becomes all zeros.
    """
    flat = cams.reshape(cams.shape[0], -1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / (flat.amax(dim=1, keepdim=True) + SCALE_EPS)
    return flat.reshape(cams.shape)


def resize_cams(cams: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize maps with (bi/tri)linear interpolation and half-pixel centres.

    This is what ``cv2.resize(..., INTER_LINEAR)`` and ``F.interpolate(align_corners=False)`` do.

    Args:
        cams: ``(B, h, w)`` or ``(B, d, h, w)``.
        size: the target spatial size, ``(H, W)`` or ``(D, H, W)``.

    Returns:
        ``(B, *size)``.
    """
    size = tuple(int(s) for s in size)
    if tuple(cams.shape[1:]) == size:
        return cams
    if len(size) != cams.dim() - 1:
        raise ValueError(f"size {size} does not match maps of shape {tuple(cams.shape)}")
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}.get(len(size))
    if mode is None:
        raise ValueError(f"maps must be 1-D, 2-D or 3-D; got shape {tuple(cams.shape)}")
    return F.interpolate(cams.unsqueeze(1), size=size, mode=mode, align_corners=False).squeeze(1)


def layer_cam_to_unit(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """One target layer's map to the output scale: ReLU, min-max scaling, then resize.

    Args:
        cam: ``(B, *spatial)`` the channel-reduced map of one layer.
        size: the input's spatial size.

    Returns:
        ``(B, *size)``.
    """
    return resize_cams(scale_to_unit(torch.relu(cam)), size)


def aggregate_layers(cams: Sequence[torch.Tensor]) -> torch.Tensor:
    """Combine per-layer maps of the same size: ReLU, mean over layers, min-max scaling.

    Args:
        cams: one ``(B, *size)`` map per target layer, each already scaled.

    Returns:
        ``(B, *size)``.
    """
    stacked = torch.relu(torch.stack(list(cams), dim=1))
    return scale_to_unit(stacked.mean(dim=1))


#: The kernels of :func:`kernel_matrix` (scikit-learn's ``KernelPCA`` names).
KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")


def elementwise_grad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAMElementWise's per-channel maps ``relu(G * A)``, shape ``(B, C, *spatial)``."""
    return torch.relu(grads * activations)


def fem_weights(activations: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """FEM channel weights: the share of positions where a channel is unusually strong.

    ``w_c = mean_ij [A_cij > mu_c + k sigma_c]`` with ``mu_c`` and ``sigma_c`` (population
    standard deviation) taken over the positions of channel ``c``.

    Args:
        activations: ``(B, C, *spatial)``.
        k: how many standard deviations above the mean count as strong.

    Returns:
        ``(B, C)`` weights in [0, 1].
    """
    dims = spatial_dims(activations)
    mean = activations.mean(dim=dims, keepdim=True)
    std = activations.std(dim=dims, keepdim=True, correction=0)
    return (activations > mean + k * std).to(activations.dtype).mean(dim=dims)


def gaussian_blur(
    images: torch.Tensor, sigma: float = 5.0, kernel_size: int = 11, *, border: str = "replicate"
) -> torch.Tensor:
    """Separable Gaussian blur over every spatial axis.

    Args:
        images: ``(B, C, *S)`` floating batch.
        sigma: the Gaussian's standard deviation in pixels.
        kernel_size: odd number of taps; the kernel is ``exp(-t^2 / (2 sigma^2))`` for
            ``t = -r .. r`` (``r = kernel_size // 2``), normalised to sum 1.
        border: ``"replicate"`` (edge pixels repeated) or ``"reflect"`` (mirrored without repeating
            the edge, OpenCV's default; an axis shorter than ``r + 1`` pixels is replicated).

    Returns:
        ``(B, C, *S)`` blurred batch.
    """
    if border not in ("replicate", "reflect"):
        raise ValueError(f"border must be 'replicate' or 'reflect'; got {border!r}")
    radius = kernel_size // 2
    taps = torch.arange(kernel_size, dtype=torch.float64) - radius
    kernel = torch.exp(-(taps**2) / (2 * float(sigma) ** 2))
    kernel = (kernel / kernel.sum()).to(device=images.device, dtype=images.dtype).view(1, 1, -1)
    out = images
    for axis in range(2, images.dim()):
        moved = out.movedim(axis, -1)
        shape = moved.shape
        mode = border if border == "replicate" or shape[-1] > radius else "replicate"
        rows = F.pad(moved.reshape(-1, 1, shape[-1]), (radius, radius), mode=mode)
        out = F.conv1d(rows, kernel).reshape(shape).movedim(-1, axis)
    return out


def kernel_matrix(
    x: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None, degree: int = 3, coef0: float = 1.0
) -> torch.Tensor:
    """The kernel (Gram) matrices of batches of samples, with scikit-learn's definitions.

    ``linear``: ``<x, y>``; ``poly``: ``(gamma <x, y> + coef0) ** degree``; ``rbf``:
    ``exp(-gamma ||x - y||^2)``; ``sigmoid``: ``tanh(gamma <x, y> + coef0)``; ``cosine``:
    ``<x, y> / (||x|| ||y||)`` (0 for a zero vector). ``gamma=None`` means ``1 / features``.

    Args:
        x: ``(B, N, F)``: ``B`` sets of ``N`` samples with ``F`` features.
        kernel: one of :data:`KERNELS`.
        gamma: the kernel coefficient of ``poly``, ``rbf`` and ``sigmoid``.
        degree: the degree of ``poly``.
        coef0: the constant of ``poly`` and ``sigmoid``.

    Returns:
        ``(B, N, N)``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
    gamma = 1.0 / x.shape[-1] if gamma is None else gamma
    dot = x @ x.transpose(-1, -2)
    if kernel == "linear":
        return dot
    if kernel == "poly":
        return (gamma * dot + coef0) ** degree
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + coef0)
    squared = (x * x).sum(dim=-1)
    if kernel == "rbf":
        distances = (squared.unsqueeze(-1) + squared.unsqueeze(-2) - 2 * dot).clamp_min(0)
        return torch.exp(-gamma * distances)
    norms = squared.sqrt()
    norms = torch.where(norms == 0, torch.ones_like(norms), norms)
    return dot / (norms.unsqueeze(-1) * norms.unsqueeze(-2))


def kernel_principal_component(
    activations: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None
) -> torch.Tensor:
    """Project each image's positions on the first kernel principal component of its activations.

    For every image the ``(positions, C)`` matrix is centred over positions; its kernel matrix
    ``K`` is centred in feature space (``K - 1K/n - K1/n + 1K1/n^2``); the projection is
    ``sqrt(lambda_1) v_1`` for the largest eigenvalue ``lambda_1`` (clamped at 0) and its unit
    eigenvector ``v_1``, whose entry of largest magnitude is made positive. This is what
    scikit-learn's ``KernelPCA(n_components=1).fit_transform`` returns. Computed in float64 with
    one batched ``eigh``; the cost grows as ``positions ** 3``.

    Args:
        activations: ``(B, C, *spatial)``.
        kernel: see :func:`kernel_matrix`.
        gamma: see :func:`kernel_matrix`.

    Returns:
        ``(B, *spatial)`` projections, in the activations' dtype.
    """
    batch, channels = activations.shape[:2]
    samples = torch.nan_to_num(activations, nan=0.0).reshape(batch, channels, -1).transpose(1, 2).double()
    samples = samples - samples.mean(dim=1, keepdim=True)
    gram = kernel_matrix(samples, kernel, gamma)
    gram = (
        gram
        - gram.mean(dim=1, keepdim=True)
        - gram.mean(dim=2, keepdim=True)
        + gram.mean(dim=(1, 2), keepdim=True)
    )
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    vector = eigenvectors[..., -1]
    largest = vector.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(vector.gather(1, largest))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    projection = vector * sign * eigenvalues[:, -1:].clamp_min(0).sqrt()
    return projection.reshape(batch, *activations.shape[2:]).to(activations.dtype)


def channel_unit_sum(maps: torch.Tensor) -> torch.Tensor:
    """Scale every channel of every image to [0, 1] on its own (:func:`scale_to_unit`), then sum channels.

    Args:
        maps: ``(B, C, *spatial)``.

    Returns:
        ``(B, *spatial)``.
    """
    batch, channels = maps.shape[:2]
    scaled = scale_to_unit(maps.reshape(batch * channels, *maps.shape[2:]))
    return scaled.reshape(maps.shape).sum(dim=1)


def smooth_grad_cam_plusplus_weights(
    grads_2: torch.Tensor,
    grads_3: torch.Tensor,
    activations: torch.Tensor,
    grads: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Smooth Grad-CAM++ channel weights, as torchcam 0.5 computes them.

    ``a = D2 / (2 D2 + sum_ij (D3 * A) + eps)`` and ``w_c = sum_ij a relu(G)``, with ``D2``,
    ``D3`` the means over the noisy samples of the squared and cubed gradients.

    Args:
        grads_2: ``(B, C, *spatial)`` mean squared gradient.
        grads_3: ``(B, C, *spatial)`` mean cubed gradient.
        activations: ``(B, C, *spatial)`` the activations in the sums of the denominator.
        grads: ``(B, C, *spatial)`` the gradient whose positive part is weighted.
        eps: added to the denominator.

    Returns:
        ``(B, C)`` weights.
    """
    dims = spatial_dims(activations)
    alpha = grads_2 / (2 * grads_2 + (grads_3 * activations).sum(dim=dims, keepdim=True) + eps)
    return (alpha * torch.relu(grads)).sum(dim=dims)
