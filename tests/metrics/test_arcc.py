"""ARCC, Complexity, Coherency: by hand."""

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam.metrics.arcc import (
    ARCC,
    Coherency,
    Complexity,
    batch_pearson_coherency,
    harmonic_arcc,
    pearson_correlation,
)


def test_pearson_by_hand():
    # a = (1, 2, 3), b = (2, 4, 7): centred (-1, 0, 1) and (-7/3, -1/3, 8/3); cov = 5 / 2,
    # var(a) = 1, var(b) = (49 + 1 + 64) / 9 / 2 = 19 / 3
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 4.0, 7.0], [5.0, 6.0, 7.0]])
    rho = pearson_correlation(a, b)
    assert rho[0].item() == pytest.approx(2.5 / np.sqrt(19 / 3), abs=1e-7)
    assert rho[1].item() == 0.0  # a constant sample
    np.testing.assert_allclose(batch_pearson_coherency(a.numpy(), b.numpy()), rho.numpy())


def test_complexity_by_hand():
    cams = np.array([[[0.0, 0.5], [1.0, 0.5]], [[0.0, 0.0], [0.0, -1.0]]], dtype=np.float32)
    np.testing.assert_allclose(Complexity()(cams), [0.5, 0.25])
    np.testing.assert_allclose(Complexity()(torch.from_numpy(cams)), [0.5, 0.25])


def test_harmonic_arcc_by_hand():
    # coherency 0.5, 1 - complexity 0.5, road 0.25 -> 0.5: 3 / (2 + 2 + 2)
    got = harmonic_arcc(torch.tensor([0.5, 1.0]), torch.tensor([0.5, 0.0]), torch.tensor([0.25, 0.9]))
    np.testing.assert_allclose(got.numpy(), [0.5, 1.0], atol=1e-6)  # a road over 0.5 is clipped to 1


class FirstChannel:
    """A stand-in CAM method: the map of an image is its first channel."""

    def __init__(self):
        self.calls = []

    def __call__(self, input_tensor, targets=None):
        self.calls.append((input_tensor.clone(), targets))
        return input_tensor[:, 0].numpy()


def test_coherency_by_hand(small_cnn):
    image = torch.tensor([[[[1.0, 2.0, 3.0]], [[9.0, 9.0, 9.0]], [[0.0, 0.0, 0.0]]]])  # (1, 3, 1, 3)
    cam = np.array([[[1.0, 0.5, 0.0]]], dtype=np.float32)
    method = FirstChannel()
    got = Coherency()(image, cam, [2], small_cnn, method)
    mixed, targets = method.calls[0]
    assert torch.equal(mixed[0, 0, 0], torch.tensor([1.0, 1.0, 0.0])) and targets == [2]
    # rho((1, 1, 0), (1, 0.5, 0)) = (1/2) / sqrt(1/3 * 1/4) = sqrt(3) / 2
    assert got.dtype == np.float32 and got[0] == pytest.approx((np.sqrt(3) / 2 + 1) / 2, abs=1e-6)


class IgnoresImage(torch.nn.Module):
    """Logits that do not depend on the image: ROAD's every perturbation changes nothing (ROAD = 0)."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor([0.5, 2.0, -1.0]))

    def forward(self, x):
        return self.logits.expand(x.shape[0], 3) + 0 * x.sum()


def test_arcc_by_hand_on_a_model_that_ignores_the_image():
    # image (1, 3, 1, 3), map (1, 0.5, 0): coherency sqrt(3)/2 -> (sqrt(3)/2 + 1) / 2 (as above),
    # complexity 0.5, ROAD 0 (the logits never move), so
    # ARCC = 3 / (1 / coherency + 1 / 0.5 + 1 / eps), every term + eps: about 3 eps
    image = torch.tensor([[[[1.0, 2.0, 3.0]], [[9.0, 9.0, 9.0]], [[0.0, 0.0, 0.0]]]])
    cam = np.array([[[1.0, 0.5, 0.0]]], dtype=np.float32)
    model = IgnoresImage()
    before = model_snapshot(model)
    got = ARCC(FirstChannel(), road_percentiles=(50,), generator=torch.Generator().manual_seed(0))(
        image, cam, [1], model
    )
    assert_same_model(before, model_snapshot(model))
    coherency = (np.sqrt(3) / 2 + 1) / 2
    eps = 1e-8
    expected = 3 / (1 / (coherency + eps) + 1 / (0.5 + eps) + 1 / eps)
    assert got.dtype == np.float32 and got[0] == pytest.approx(expected, rel=1e-5)
    assert expected < 1e-7  # ROAD's term decides: without it the score would be about 0.6


def test_bad_arguments(small_cnn, images):
    with pytest.raises(TypeError, match="base_method must be a CAM object"):
        ARCC("gradcam")
    x = images(1, size=8)
    with pytest.raises(ValueError, match="cams has shape"):
        Coherency()(x, np.zeros((1, 4, 4), dtype=np.float32), None, small_cnn, FirstChannel())
    with pytest.raises(TypeError, match="grayscale_cams must be"):
        Complexity()([[0.0]])
