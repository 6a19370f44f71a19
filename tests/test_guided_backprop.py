"""Guided backpropagation: hand-computed gradients, every rectifier spelling, and an untouched model."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam.guided_backprop import (
    GuidedBackpropReLU,
    GuidedBackpropReLUasModule,
    GuidedBackpropReLUModel,
)

# A 3 -> 3 -> 2 -> 2 network with two rectifier layers and integer weights. For x = (1, 2, -1):
#   h1 = W1 x = (3, -2, 1)      a1 = relu(h1) = (3, 0, 1)       (unit 2 inactive)
#   h2 = W2 a1 = (2, 4)         a2 = relu(h2) = (2, 4)
#   out = W3 a2 = (-2, 6)                                         (top class: 1)
W1 = [[1.0, 1.0, 0.0], [0.0, -1.0, 0.0], [2.0, 0.0, 1.0]]
W2 = [[1.0, 5.0, -1.0], [1.0, 0.0, 1.0]]
W3 = [[1.0, -1.0], [-1.0, 2.0]]
X = [1.0, 2.0, -1.0]
# Guided, class 0: dout/da2 = (1, -1) -> (1, 0); da1 = W2^T (1, 0) = (1, 5, -1) -> active and
# positive: (1, 0, 0); dx = W1^T (1, 0, 0) = (1, 1, 0).
# Guided, class 1: (-1, 2) -> (0, 2); W2^T (0, 2) = (2, 0, 2) -> (2, 0, 2); dx = (6, 2, 2).
GUIDED = {0: [1.0, 1.0, 0.0], 1: [6.0, 2.0, 2.0]}
# Plain gradients of the same network (to show the guided rule changed something):
# class 0: (1, -1) -> W2^T = (0, 5, -2) -> mask (0, 0, -2) -> dx = (-4, 0, -2);
# class 1: (-1, 2) -> (1, -5, 3) -> (1, 0, 3) -> dx = (7, 1, 3).
PLAIN = {0: [-4.0, 0.0, -2.0], 1: [7.0, 1.0, 3.0]}


def _relu_variants():
    return {
        "nn.ReLU": lambda: nn.ReLU(),
        "nn.ReLU(inplace)": lambda: nn.ReLU(inplace=True),
        "F.relu": lambda: F.relu,
        "F.relu(inplace)": lambda: lambda t: F.relu(t, inplace=True),
        "torch.relu": lambda: torch.relu,
        "torch.relu_": lambda: torch.relu_,
        "Tensor.relu": lambda: lambda t: t.relu(),
        "Tensor.relu_ (result unused)": lambda: lambda t: (t.relu_(), t)[1],
    }


class TwoReluNet(nn.Module):
    """``x.flatten() -> W1 -> act -> W2 -> act -> W3``; ``act`` is a module or a functional call."""

    def __init__(self, make_act) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 3, bias=False)
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.fc3 = nn.Linear(2, 2, bias=False)
        self.act1, self.act2 = make_act(), make_act()
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor(W1))
            self.fc2.weight.copy_(torch.tensor(W2))
            self.fc3.weight.copy_(torch.tensor(W3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x.flatten(1))))))


def _x(batch: int = 1) -> torch.Tensor:
    return torch.tensor(X).view(1, 3, 1, 1).repeat(batch, 1, 1, 1)


def _plain_gradient(model: nn.Module, x: torch.Tensor, category: int) -> torch.Tensor:
    x = x.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(model(x)[0, category], x)
    return gradient[0].flatten()


@pytest.mark.parametrize("variant", list(_relu_variants()))
@pytest.mark.parametrize("category", [0, 1])
def test_golden_guided_gradient_for_every_relu_spelling(variant, category):
    model = TwoReluNet(_relu_variants()[variant]).eval()
    assert _plain_gradient(model, _x(), category).tolist() == PLAIN[category]  # the hand model is right
    result = GuidedBackpropReLUModel(model)(_x(), target_category=category)
    assert result.shape == (1, 1, 3) and result.dtype == np.float32  # (H, W, C)
    assert result[0, 0].tolist() == GUIDED[category]


def test_default_target_is_the_top_class():
    model = TwoReluNet(nn.ReLU).eval()
    assert GuidedBackpropReLUModel(model)(_x())[0, 0].tolist() == GUIDED[1]


def test_batch_gives_one_gradient_image_per_sample():
    model = TwoReluNet(nn.ReLU).eval()
    x = _x(2)
    x[1] = x[1] * 2  # scaling the input keeps every activation pattern: same guided gradient
    result = GuidedBackpropReLUModel(model)(x, target_category=[0, 1])
    assert result.shape == (2, 1, 1, 3)
    assert result[0, 0, 0].tolist() == GUIDED[0]
    assert result[1, 0, 0].tolist() == GUIDED[1]


class ClippedNet(nn.Module):
    """``x (2) -> W1 (3x2) -> act -> W2 (1x3)`` for the ReLU6 / clipped-ReLU rule.

    x = (4, 1): h = (8, 1, 5), relu6(h) = (6, 1, 5), out = 6 + 1 - 5. Unit 1 is saturated (h > 6),
    so nothing passes it; unit 3 gets a negative gradient, which the guided rule blocks:
    guided dx = W1^T (0, 1, 0) = (0, 1); plain dx = W1^T (0, 1, -1) = (-1, 0).
    """

    def __init__(self, act) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.fc2 = nn.Linear(3, 1, bias=False)
        self.act = act
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 1.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


@pytest.mark.parametrize(
    "act",
    [
        nn.ReLU6(),
        nn.ReLU6(inplace=True),
        F.relu6,
        lambda t: F.relu6(t, inplace=True),
        nn.Hardtanh(0.0, 6.0),
        lambda t: F.hardtanh(t, min_val=0.0, max_val=6.0),
        lambda t: F.hardtanh_(t, 0.0, 6.0),
    ],
    ids=[
        "ReLU6",
        "ReLU6(inplace)",
        "F.relu6",
        "F.relu6(inplace)",
        "Hardtanh(0,6)",
        "F.hardtanh",
        "hardtanh_",
    ],
)
def test_golden_clipped_relu(act):
    model = ClippedNet(act).eval()
    x = torch.tensor([4.0, 1.0]).view(1, 2, 1, 1)
    assert _plain_gradient(model, x, 0).tolist() == [-1.0, 0.0]
    assert GuidedBackpropReLUModel(model)(x, target_category=0)[0, 0].tolist() == [0.0, 1.0]


def test_a_hardtanh_that_is_not_a_rectifier_backpropagates_plainly():
    model = ClippedNet(nn.Hardtanh(-10.0, 10.0)).eval()  # identity on these values
    x = torch.tensor([4.0, 1.0]).view(1, 2, 1, 1)
    plain = _plain_gradient(model, x, 0).tolist()
    assert plain == [1.0, 0.0]  # W1^T (1, 1, -1)
    assert GuidedBackpropReLUModel(model)(x, target_category=0)[0, 0].tolist() == plain


def test_image_shaped_output_and_agreement_with_plain_gradient_without_rectifiers():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 6, 5)
    ).eval()
    x = torch.randn(1, 3, 8, 6)
    result = GuidedBackpropReLUModel(model)(x, target_category=3)
    assert result.shape == (8, 6, 3)
    x_grad = x.clone().requires_grad_()
    (plain,) = torch.autograd.grad(model(x_grad)[0, 3], x_grad)
    np.testing.assert_allclose(result, plain[0].permute(1, 2, 0).numpy(), rtol=1e-6, atol=1e-7)


def _assert_relu_is_plain_again() -> None:
    t = torch.tensor([1.0, -1.0], requires_grad=True)
    (gradient,) = torch.autograd.grad((torch.relu(t) * torch.tensor([-3.0, 1.0])).sum(), t)
    assert gradient.tolist() == [-3.0, 0.0]  # the negative gradient passes: no guided rule left


def test_model_is_left_as_it_was():
    model = TwoReluNet(nn.ReLU)
    model.train()
    model.fc2.eval()
    model.fc3.weight.requires_grad_(False)
    before = model_snapshot(model)
    x = _x()
    GuidedBackpropReLUModel(model)(x, target_category=0)
    assert_same_model(before, model_snapshot(model))
    assert x.grad is None and not x.requires_grad
    _assert_relu_is_plain_again()


class FailingNet(TwoReluNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.act1(self.fc1(x.flatten(1)))
        raise RuntimeError("boom")


def test_model_is_left_as_it_was_when_the_forward_raises():
    model = FailingNet(nn.ReLU)
    model.train()
    before = model_snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        GuidedBackpropReLUModel(model)(_x(), target_category=0)
    assert_same_model(before, model_snapshot(model))
    _assert_relu_is_plain_again()


class ThreadProbeNet(TwoReluNet):
    """Runs a plain ReLU backward in another thread in the middle of its own forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = {}

        def other_thread() -> None:
            t = torch.tensor([1.0], requires_grad=True)
            with torch.enable_grad():
                seen["grad"] = torch.autograd.grad(torch.relu(t) * -2.0, t)[0].item()

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        self.other_thread_grad = seen["grad"]
        return super().forward(x)


def test_other_threads_keep_plain_relus():
    model = ThreadProbeNet(nn.ReLU).eval()
    result = GuidedBackpropReLUModel(model)(_x(), target_category=0)
    assert model.other_thread_grad == -2.0
    assert result[0, 0].tolist() == GUIDED[0]


def test_works_under_no_grad_and_inference_mode():
    model = TwoReluNet(nn.ReLU).eval()
    gb_model = GuidedBackpropReLUModel(model)
    with torch.no_grad():
        assert gb_model(_x(), target_category=1)[0, 0].tolist() == GUIDED[1]
    with torch.inference_mode():
        assert gb_model(_x(), target_category=1)[0, 0].tolist() == GUIDED[1]


def test_seed_call_form():
    from pytorch_grad_cam import GuidedBackpropReLUModel as exported  # the original API's import

    assert exported is GuidedBackpropReLUModel
    model = TwoReluNet(nn.ReLU).eval()
    gb_model = GuidedBackpropReLUModel(model=model, use_cuda=False)
    assert gb_model(_x(), None)[0, 0].tolist() == GUIDED[1]


def test_errors():
    model = TwoReluNet(nn.ReLU).eval()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        GuidedBackpropReLUModel(lambda x: x)
    gb_model = GuidedBackpropReLUModel(model)
    with pytest.raises(TypeError, match="input_tensor must be a torch.Tensor"):
        gb_model(np.zeros((1, 3, 1, 1)))
    with pytest.raises(ValueError, match="target_category has 1 entries but the batch has 2"):
        gb_model(_x(2), target_category=[0])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            GuidedBackpropReLUModel(model, use_cuda=True)


@pytest.mark.parametrize("guided", [GuidedBackpropReLU.apply, GuidedBackpropReLUasModule()])
def test_1_5_guided_relu_by_hand(guided):
    x = torch.tensor([-1.0, 0.5, 2.0, 3.0], requires_grad=True)
    y = guided(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.5, 2.0, 3.0]))
    y.backward(torch.tensor([5.0, -1.0, 2.0, 0.5]))
    # passed back only where x > 0 and the incoming gradient is positive
    assert torch.equal(x.grad, torch.tensor([0.0, 0.0, 2.0, 0.5]))
