"""ARCC, Complexity, Coherency: by hand, and assembled from their parts."""

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.metrics.arcc import (
    ARCC,
    Coherency,
    Complexity,
    batch_pearson_coherency,
    harmonic_arcc,
    pearson_correlation,
)
from pytorch_grad_cam.metrics.road import ROADCombined


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


def test_arcc_is_assembled_from_its_parts(small_cnn, images):
    x = images(2, size=16)
    model = small_cnn
    cam = GradCAM(model, [model.block2])
    maps = cam(x, [1, 3])
    before = model_snapshot(model)
    got = ARCC(cam, generator=torch.Generator().manual_seed(3))(x, maps, [1, 3], model)
    assert_same_model(before, model_snapshot(model))
    coherency = Coherency()(x, maps, [1, 3], model, cam)
    road = ROADCombined(percentiles=(20, 40, 60, 80), generator=torch.Generator().manual_seed(3))(
        x, maps, [1, 3], model
    )
    expected = harmonic_arcc(
        torch.from_numpy(coherency).double(),
        torch.from_numpy(Complexity()(maps)).double(),
        torch.from_numpy(road).double(),
    )
    assert got.shape == (2,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected.float().numpy(), rtol=1e-6)
    assert ((got >= 0) & (got <= 1)).all()


def test_bad_arguments(small_cnn, images):
    with pytest.raises(TypeError, match="base_method must be a CAM object"):
        ARCC("gradcam")
    x = images(1, size=8)
    with pytest.raises(ValueError, match="cams has shape"):
        Coherency()(x, np.zeros((1, 4, 4), dtype=np.float32), None, small_cnn, FirstChannel())
    with pytest.raises(TypeError, match="grayscale_cams must be"):
        Complexity()([[0.0]])
