"""FinerCAM and FinerWeightedTarget: golden values."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from pytorch_grad_cam import FinerCAM, FullGrad, GradCAM, HiResCAM, LayerCAM
from pytorch_grad_cam.finer_cam import finer_targets
from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

X = torch.tensor([[[[1.0, 2.0, 3.0]]]])  # one channel, A = x
# logits for X: y = [18, 12, 12, 12, 0]
HEAD = [
    [3.0, 3.0, 3.0],
    [0.0, 0.0, 4.0],
    [12.0, 0.0, 0.0],
    [0.0, 6.0, 0.0],
    [0.0, 0.0, 0.0],
]


def test_target_golden():
    v = torch.tensor([0.3, 1.0, -0.5, 2.0, 0.7], requires_grad=True)
    target = FinerWeightedTarget(0, [1, 2, 3], 1.0)
    score = target(v)
    # softmax([1, -0.5, 2]) = [0.25372, 0.05661, 0.68967]; 0.3 - (0.25372 - 0.02831 + 1.37934)
    torch.testing.assert_close(score, torch.tensor(-1.3047545), atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(score, v)
    # d/dy_k of sum s_k y_k = s_k (1 + y_k - sum s y)
    s = torch.softmax(torch.tensor([1.0, -0.5, 2.0]), 0)
    mean = (s * torch.tensor([1.0, -0.5, 2.0])).sum()
    expected = torch.cat([torch.ones(1), -s * (1 + torch.tensor([1.0, -0.5, 2.0]) - mean), torch.zeros(1)])
    torch.testing.assert_close(grad, expected)


def test_targets_rank_classes_by_closeness():
    logits = torch.tensor([[18.0, 12.0, 12.0, 12.0, 0.0], [0.0, 5.0, 4.0, 1.0, 3.5]])
    first, second = finer_targets(logits)
    assert (first.main_category, first.comparison_categories) == (0, [1, 2, 3])
    # image 2: top class 1 (5.0); distances [5, 0, 1, 4, 1.5] -> order [1, 2, 4, 3, 0]
    assert (second.main_category, second.comparison_categories) == (1, [2, 4, 3])
    (picked,) = finer_targets(logits[1:], comparison_categories=[0, 4], target_idx=3, alpha=0.5)
    # distances to y_3 = 1: [1, 4, 3, 0, 2.5] -> order [3, 0, 4, 2, 1]
    assert (picked.main_category, picked.comparison_categories, picked.alpha) == (3, [3, 1], 0.5)
    with pytest.raises(ValueError, match="need at least 6 classes"):
        finer_targets(logits, comparison_categories=[5])
    with pytest.raises(ValueError, match="target_idx 5 is out of range"):
        finer_targets(logits, target_idx=5)


def test_golden_value(mixing_head_net):
    model = mixing_head_net(HEAD, mixing=[[1.0]])
    # the comparison classes 1-3 tie (y = 12), so s = 1/3 and G = W0 - alpha * mean(W1, W2, W3)
    # = [3, 3, 3] - [4, 2, 4/3] = [-1, 1, 5/3]; HiResCAM: G * A = [-1, 2, 5] -> [0, 0.4, 1]
    cam = FinerCAM(model, [model.features], base_method=HiResCAM)
    np.testing.assert_allclose(cam(X), [[[0.0, 0.4, 1.0]]], atol=1e-6)
    # alpha = 2: G = [-5, -1, 1/3], G * A = [-5, -2, 1] -> [0, 0, 1]
    np.testing.assert_allclose(cam(X, alpha=2.0), [[[0.0, 0.0, 1.0]]], atol=1e-6)
    # targets given: the base method alone (HiResCAM of class 0: G = [3, 3, 3] -> x)
    np.testing.assert_allclose(cam(X, [0]), [[[0.0, 0.5, 1.0]]], atol=1e-6)
    # GradCAM base: mean G = 5/9 > 0, a positive multiple of x
    np.testing.assert_allclose(FinerCAM(model, [model.features])(X), [[[0.0, 0.5, 1.0]]], atol=1e-6)


def test_matches_the_base_method_on_the_finer_target(small_cnn, images):
    x = images(2, size=12)
    with torch.no_grad():
        logits = small_cnn(x)
    targets = finer_targets(logits, alpha=0.7, comparison_categories=[1, 2])
    for base in (GradCAM, LayerCAM):
        finer = FinerCAM(small_cnn, [small_cnn.block2], base_method=base)(
            x, alpha=0.7, comparison_categories=[1, 2], aug_smooth=True
        )
        np.testing.assert_allclose(
            finer, base(small_cnn, [small_cnn.block2])(x, targets, aug_smooth=True), atol=1e-6
        )


def test_bad_arguments(mixing_head_net):
    model = mixing_head_net(HEAD, mixing=[[1.0]])
    with pytest.raises(TypeError, match="base_method must be a CAM class"):
        FinerCAM(model, [model.features], base_method=len)
    with pytest.raises(ValueError, match="base_method=FullGrad"):
        FinerCAM(model, [model.features], base_method=FullGrad)
    cam = FinerCAM(model, [model.features])
    with pytest.raises(TypeError, match="alpha must be a number"):
        cam(X, alpha="1")
    with pytest.raises(ValueError, match="comparison_categories must be a non-empty list"):
        cam(X, comparison_categories=[])
    with pytest.raises(ValueError, match="comparison_categories must be a non-empty list"):
        cam(X, comparison_categories=[1, -1])
    with pytest.raises(ValueError, match="need at least 9 classes"):
        cam(X, comparison_categories=[8])
    with pytest.raises(ValueError, match="target_idx must be None or a class index"):
        cam(X, target_idx=-1)
    with pytest.raises(TypeError, match="main_category must be an int"):
        FinerWeightedTarget(0.5, [1], 1.0)
    with pytest.raises(ValueError, match="comparison_categories is empty"):
        FinerWeightedTarget(0, [], 1.0)


class _Gate(torch.nn.Module):
    """Pauses the forward of one chosen thread until told to go on."""

    def __init__(self) -> None:
        super().__init__()
        self.paused_thread = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def forward(self, x):
        if threading.get_ident() == self.paused_thread:
            self.paused.set()
            assert self.resume.wait(10)
        return x


def test_concurrent_calls_keep_their_own_options(small_cnn, images):
    # one FinerCAM object called from two threads with different alpha: each call's default targets
    # use its own alpha, as when the calls run one after the other
    gate = _Gate()
    model = torch.nn.Sequential(gate, small_cnn).eval()
    x = images(2, seed=4)
    cam = FinerCAM(model, [small_cnn.block2])
    alone_1, alone_0 = cam(x, alpha=1.0), cam(x, alpha=0.0)
    assert np.abs(alone_1 - alone_0).max() > 0.05  # alpha changes the answer on this fixture
    results = {}

    def other():
        assert gate.paused.wait(10)
        results["other"] = cam(x, alpha=0.0)  # while the first call waits inside its forward
        gate.resume.set()

    thread = threading.Thread(target=other)
    thread.start()
    gate.paused_thread = threading.get_ident()
    try:
        results["first"] = cam(x, alpha=1.0)
    finally:
        gate.paused_thread = None
        gate.resume.set()
        thread.join()
    np.testing.assert_array_equal(results["other"], alone_0)
    np.testing.assert_array_equal(results["first"], alone_1)
