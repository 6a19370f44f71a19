"""The pure CAM math, without hooks or models."""

import numpy as np
import pytest
import torch

from pytorch_grad_cam import functional as CF


def test_resize_bilinear_half_pixel_centres():
    # Upsampling [[0, 1], [2, 3]] x2 with half-pixel centres: output pixel i samples the input at
    # (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1] at the borders.
    cams = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    row = np.array([0.0, 0.25, 0.75, 1.0])
    weights = np.array([0.0, 0.25, 0.75, 1.0])  # weight of input row 1 for each output row
    expected = row[None, :] + 2 * weights[:, None]
    np.testing.assert_allclose(CF.resize_cams(cams, (4, 4))[0].numpy(), expected, atol=1e-6)


def test_resize_trilinear():
    cams = torch.zeros(1, 2, 1, 1)
    cams[0, 1] = 4.0
    out = CF.resize_cams(cams, (4, 1, 1))[0, :, 0, 0]
    np.testing.assert_allclose(out.numpy(), [0.0, 1.0, 3.0, 4.0], atol=1e-6)


def test_resize_same_size_is_identity_and_bad_size_raises():
    cams = torch.rand(2, 3, 3)
    assert CF.resize_cams(cams, (3, 3)) is cams
    with pytest.raises(ValueError, match="does not match"):
        CF.resize_cams(cams, (3, 3, 3))


def test_scale_to_unit_per_image():
    cams = torch.tensor([[[1.0, 3.0]], [[-2.0, -2.0]]])
    out = CF.scale_to_unit(cams)
    np.testing.assert_allclose(out[0].numpy(), [[0.0, 2.0 / (2.0 + 1e-7)]], rtol=1e-6)
    np.testing.assert_array_equal(out[1].numpy(), [[0.0, 0.0]])  # constant map -> zeros, no NaN


def test_layer_cam_to_unit_applies_relu_first():
    cam = torch.tensor([[[-5.0, 1.0], [2.0, 0.0]]])
    out = CF.layer_cam_to_unit(cam, (2, 2))
    np.testing.assert_allclose(out[0].numpy(), [[0.0, 0.5], [1.0, 0.0]], atol=1e-6)


def test_aggregate_layers_mean_then_scale():
    a = torch.tensor([[[0.0, 1.0], [0.5, 0.0]]])
    b = torch.tensor([[[0.0, 0.0], [1.0, 0.2]]])
    # mean = [[0, 0.5], [0.75, 0.1]] -> / 0.75
    out = CF.aggregate_layers([a, b])
    np.testing.assert_allclose(out[0].numpy(), [[0.0, 2 / 3], [1.0, 0.1 / 0.75]], atol=1e-6)


def test_weight_formulas_against_loops():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, 5, generator=generator)
    g = torch.randn(2, 3, 4, 5, generator=generator)
    g[0, 0, 0, 0] = 0.0
    for b in range(2):
        for c in range(3):
            ga, aa = g[b, c].double(), a[b, c].double()
            assert CF.grad_cam_weights(g)[b, c].item() == pytest.approx(ga.mean().item(), abs=1e-6)
            s = aa.sum()
            alpha = ga**2 / (2 * ga**2 + s * ga**3 + 1e-6)
            alpha[ga == 0] = 0
            expected = (ga.clamp(min=0) * alpha).sum().item()
            assert CF.grad_cam_plusplus_weights(a, g)[b, c].item() == pytest.approx(
                expected, rel=1e-4, abs=1e-6
            )
            expected = (ga * aa / (s + 1e-7)).sum().item()
            assert CF.xgrad_cam_weights(a, g)[b, c].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    torch.testing.assert_close(CF.layer_cam_weights(g), g.clamp(min=0))


def test_weighted_sum_channel_and_positional():
    a = torch.arange(8.0).view(1, 2, 2, 2)
    w = torch.tensor([[1.0, -1.0]])
    np.testing.assert_allclose(CF.weighted_sum(w, a)[0].numpy(), [[-4.0, -4.0], [-4.0, -4.0]])
    wp = torch.zeros(1, 2, 2, 2)
    wp[0, 1, 1, 1] = 2.0
    np.testing.assert_allclose(CF.weighted_sum(wp, a)[0].numpy(), [[0.0, 0.0], [0.0, 14.0]])


def test_first_principal_component_matches_full_svd_and_fixes_sign():
    generator = torch.Generator().manual_seed(1)
    acts = torch.randn(3, 6, 4, 4, generator=generator, dtype=torch.float64)
    got = CF.first_principal_component(acts)
    for b in range(3):
        x = acts[b].reshape(6, -1).T
        x = x - x.mean(0)
        _, _, vh = torch.linalg.svd(x, full_matrices=True)
        proj = x @ vh[0]
        proj = proj * torch.sign(proj[proj.abs().argmax()])
        torch.testing.assert_close(got[b].reshape(-1), proj)
        assert got[b].reshape(-1)[got[b].abs().argmax()] > 0


def test_first_principal_component_sign_is_deterministic_under_negation():
    # Negating the activations flips the singular vector's arbitrary sign; the fix undoes it.
    acts = torch.randn(2, 5, 3, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(CF.first_principal_component(acts), CF.first_principal_component(-acts))


def test_first_principal_component_degenerate():
    acts = torch.full((1, 4, 3, 3), 2.0)
    acts[0, 0, 0, 0] = float("nan")  # NaN counts as 0, like the reference
    out = CF.first_principal_component(torch.full((1, 4, 3, 3), 2.0))
    np.testing.assert_array_equal(out.numpy(), np.zeros((1, 3, 3), dtype=np.float32))
    assert torch.isfinite(CF.first_principal_component(acts)).all()


def test_expand_weights_rejects_bad_shapes():
    with pytest.raises(ValueError, match="weights must have shape"):
        CF.expand_weights(torch.ones(2, 3, 4), torch.ones(2, 3, 4, 4))


def test_gaussian_blur_reflected_border_by_hand():
    offsets = torch.arange(11, dtype=torch.float64) - 5
    kernel = torch.exp(-(offsets**2) / 50)
    kernel = kernel / kernel.sum()
    delta = torch.zeros(1, 1, 21, 21)
    delta[0, 0, 10, 10] = 1.0
    out = CF.gaussian_blur(delta, border="reflect")
    torch.testing.assert_close(out[0, 0, 5:16, 5:16], torch.outer(kernel, kernel).float(), rtol=0, atol=1e-7)
    # an impulse on the edge row: the mirror does not repeat the edge, so row i gets only the tap at
    # distance i (the width-1 axis is replicated: blurring it changes nothing)
    edge = torch.zeros(1, 1, 21, 1)
    edge[0, 0, 0, 0] = 1.0
    column = CF.gaussian_blur(edge, border="reflect")[0, 0, :6, 0].double()
    torch.testing.assert_close(column, kernel[5:], rtol=0, atol=1e-7)
    constant = torch.full((1, 1, 3, 9), 0.25)  # an axis shorter than the radius is replicated
    torch.testing.assert_close(CF.gaussian_blur(constant, border="reflect"), constant, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="border must be"):
        CF.gaussian_blur(constant, border="wrap")
