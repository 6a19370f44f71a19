"""Deep Feature Factorization: the factorisation by hand, the class on a model, the image helper."""

import numpy as np
import pytest
import torch
from conftest import assert_same_model, layer_output, model_snapshot
from PIL import Image

from pytorch_grad_cam import DeepFeatureFactorization, run_dff_on_image
from pytorch_grad_cam.feature_factorization import dff, non_negative_factorization


def test_rank_one_matrix_by_hand():
    # V = a b^T: one concept, a (up to scale) in W and b in H, and W H = V exactly
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 4.0, 2.0], dtype=torch.float64)
    w, h = non_negative_factorization(torch.outer(a, b), 1)
    torch.testing.assert_close(w @ h, torch.outer(a, b), rtol=0, atol=1e-12)
    torch.testing.assert_close(w[:, 0] / w[:, 0].max(), a / 3, rtol=0, atol=1e-12)
    torch.testing.assert_close(h[0] / h[0].max(), b / 4, rtol=0, atol=1e-12)


def test_low_rank_matrix_is_recovered_deterministically():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.rand(6, 2, generator=generator) @ torch.rand(2, 8, generator=generator)
    w, h = non_negative_factorization(matrix, 2)
    assert (w >= 0).all() and (h >= 0).all()
    assert torch.linalg.norm(matrix - w @ h) / torch.linalg.norm(matrix) < 1e-3
    again = non_negative_factorization(matrix, 2)
    assert torch.equal(w, again[0]) and torch.equal(h, again[1])
    with pytest.raises(ValueError, match="no negative entry"):
        non_negative_factorization(-matrix, 2)
    with pytest.raises(ValueError, match="n_components must be an int >= 1"):
        non_negative_factorization(matrix, 0)


def test_dff_subtracts_each_channels_minimum():
    # channel c at image b, position p: a_c * s_bp, plus 5 on channel 1 (its minimum)
    a = torch.tensor([1.0, 2.0, 3.0])
    s = torch.tensor([[[0.0, 1.0], [4.0, 2.0]], [[3.0, 0.5], [1.0, 0.0]]])  # (B=2, 2, 2)
    activations = a[None, :, None, None] * s[:, None]
    activations[:, 1] += 5.0
    concepts, explanations = dff(activations.numpy(), n_components=1)
    assert concepts.shape == (3, 1) and explanations.shape == (2, 1, 2, 2)
    offset = np.array([[0.0], [5.0], [0.0]])
    rebuilt = (concepts - offset) @ explanations.transpose(1, 0, 2, 3).reshape(1, -1)
    expected = activations.numpy().transpose(1, 0, 2, 3).reshape(3, -1) - offset
    np.testing.assert_allclose(rebuilt, expected, atol=1e-9)
    np.testing.assert_allclose(explanations[:, 0] / explanations.max(), s.numpy() / 4.0, atol=1e-9)


def test_the_class_on_a_model(used_model, images):
    model = used_model
    x = images(2, size=16)
    before = model_snapshot(model)
    factorization = DeepFeatureFactorization(model, model.block2, computation_on_concepts=model.fc)
    concepts, explanations, outputs = factorization(x, n_components=3)
    assert_same_model(before, model_snapshot(model))
    model.eval()
    expected_concepts, expected_maps = dff(layer_output(model, model.block2, x).float().numpy(), 3)
    np.testing.assert_array_equal(concepts, expected_concepts)
    assert len(explanations) == 2 and explanations[0].shape == (3, 16, 16)
    assert all(m.min() >= 0 and m.max() <= 1 for m in explanations)
    with torch.no_grad():
        np.testing.assert_allclose(
            outputs, model.fc(torch.from_numpy(np.float32(concepts.T))).numpy(), atol=1e-6
        )
    assert len(DeepFeatureFactorization(model, model.block2)(x, 2)) == 2  # without a computation
    with pytest.raises(ValueError, match="never ran"):
        DeepFeatureFactorization(model, torch.nn.Linear(2, 2))(x)
    with pytest.raises(TypeError, match="target_layer must be a module"):
        DeepFeatureFactorization(model, "block2")


class TupleOut(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = PairLayer()

    def forward(self, x):
        return self.pair(x)[0].mean((1, 2, 3))[:, None]


class PairLayer(torch.nn.Module):
    def forward(self, x):
        return x, -x


def test_a_layer_output_that_is_no_map_is_a_clear_error(images):
    model = TupleOut()
    with pytest.raises(
        ValueError, match=r"needs the target layer's output as a \(B, C, h, w\) tensor; got tuple"
    ):
        DeepFeatureFactorization(model, model.pair)(images(1, size=8))
    out = DeepFeatureFactorization(model, model.pair, reshape_transform=lambda pair: pair[0].abs())(
        images(1, size=8), 2
    )
    assert out[0].shape == (3, 2)


def test_run_dff_on_image(small_cnn, images):
    x = images(1, size=16)[0]
    photo = Image.fromarray(np.uint8(np.linspace(0, 255, 16 * 16 * 3).reshape(16, 16, 3)))
    labels = ["tabby, cat, feline, pet", "cup", "car", "tree", "sky"]
    out = run_dff_on_image(
        small_cnn, small_cnn.block2, small_cnn.fc, photo, x, n_components=2, top_k=1, labels=labels
    )
    assert out.shape == (16, 48, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :16], np.asarray(photo))
