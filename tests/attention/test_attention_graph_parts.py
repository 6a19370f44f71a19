"""The capture's autograd pieces: the MLP activation that saves its layer's input, recomputing the hidden."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pytorch_grad_cam.attention import graph_parts
from pytorch_grad_cam.attention.capture import AttentionCapture
from pytorch_grad_cam.attention.graph_parts import _InputGradLinear, _RecomputedGelu

# a fixed MLP's first layer: D = 2 inputs, H = 8 hidden units (H = 4D, as a ViT's MLP)
W1 = torch.tensor(
    [[1.0, -2.0], [0.5, 0.5], [-1.0, 0.0], [0.0, 3.0], [2.0, 1.0], [-0.5, 1.5], [1.0, 1.0], [-2.0, -1.0]]
)
B1 = torch.tensor([0.0, -0.5, 1.0, 0.25, -1.0, 0.0, 0.5, -0.25])
# 2 images x 5 tokens: with _MIN_ROWS at 1 a chunk is 5 * 2 // 8 = 1 token (5 chunks)
X = torch.tensor(
    [
        [[0.1, -0.3], [1.2, 0.4], [-0.7, 0.9], [0.0, 0.0], [2.0, -1.5]],
        [[-1.0, 0.2], [0.3, 0.3], [0.8, -0.6], [-0.2, 1.1], [0.5, 0.5]],
    ]
)
ROW = torch.tensor(  # each image's gradient row (2, 1, 8)
    [[[1.0, -1.0, 0.5, 2.0, -0.5, 0.0, 1.5, -2.0]], [[0.5, 0.5, -1.0, 1.0, 0.0, 2.0, -1.0, 1.0]]]
)


def _recomputed(x, approximate):
    hidden = _InputGradLinear.apply(x, W1, B1)
    return _RecomputedGelu.apply(x, hidden.detach(), W1, B1, approximate)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("min_rows", [1, 128])  # 5 chunks of 1 token; 1 chunk of 5
def test_recomputed_gelu_equals_autograd_and_saves_the_narrow_input(
    approximate, uniform, min_rows, monkeypatch
):
    monkeypatch.setattr(graph_parts, "_MIN_ROWS", min_rows)
    grad = ROW.expand(2, 5, 8) if uniform else ROW * X[..., :1]  # a row repeated over the tokens, or not
    x = X.clone().requires_grad_(True)
    plain = F.gelu(F.linear(x, W1, B1), approximate=approximate)
    (expected,) = torch.autograd.grad(plain, x, grad)
    got = _recomputed(x, approximate)
    torch.testing.assert_close(got, plain, rtol=0, atol=0)
    saved_x, saved_weight, saved_bias = got.grad_fn.saved_tensors  # x (2, 5, 2), no (2, 5, 8) hidden
    assert saved_x.shape == (2, 5, 2) and saved_x.data_ptr() == x.data_ptr()
    assert saved_weight.data_ptr() == W1.data_ptr() and saved_bias.data_ptr() == B1.data_ptr()
    (gradient,) = torch.autograd.grad(got, x, grad)
    torch.testing.assert_close(gradient, expected, rtol=1e-6, atol=1e-6)


def test_recomputed_gelu_by_hand():
    # hidden 0 everywhere (x = 0, no bias): gelu'(0) = 1/2, so the input's gradient is (row / 2) @ W1
    x = torch.zeros(1, 3, 2, requires_grad=True)
    hidden = _InputGradLinear.apply(x, W1, None)
    out = _RecomputedGelu.apply(x, hidden.detach(), W1, None, "none")
    (gradient,) = torch.autograd.grad(out, x, ROW[:1].expand(1, 3, 8))
    # row @ W1 = [1 - .5 - .5 + 0 - 1 + 0 + 1.5 + 4, -2 - .5 + 0 + 6 - .5 + 0 + 1.5 + 2] = [4.5, 6.5]
    torch.testing.assert_close(gradient, torch.tensor([[[2.25, 3.25]] * 3]), rtol=0, atol=1e-6)


def test_the_capture_recomputes_a_gelu_on_a_linear_output_when_asked_and_others_as_they_are():
    x = X.clone().requires_grad_(True)
    with AttentionCapture(grad=True, recompute_mlp=True), torch.enable_grad():
        mlp = F.gelu(F.linear(x, W1, B1), approximate="tanh")
        other = F.gelu(x * 2.0)
    with AttentionCapture(grad=True), torch.enable_grad():  # off by default: the GELU's own graph
        default = F.gelu(F.linear(x, W1, B1), approximate="tanh")
    assert isinstance(mlp.grad_fn, _RecomputedGelu._backward_cls)
    assert not isinstance(other.grad_fn, _RecomputedGelu._backward_cls)
    assert not isinstance(default.grad_fn, _RecomputedGelu._backward_cls)
    (expected,) = torch.autograd.grad(F.gelu(F.linear(x, W1, B1), approximate="tanh"), x, ROW.expand(2, 5, 8))
    (got,) = torch.autograd.grad(mlp, x, ROW.expand(2, 5, 8))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_a_gelu_whose_linear_input_changed_in_place_since_keeps_its_own_graph():
    # the linear's input tripled in place between the layer and its GELU: a hidden recomputed from
    # it would be 3x the one the GELU saw, so the GELU runs as it is (the gradient autograd's)
    x = X.clone().requires_grad_(True)
    with AttentionCapture(grad=True, recompute_mlp=True), torch.enable_grad():
        y = x * 1.0
        hidden = F.linear(y, W1, B1)
        y.mul_(3.0)
        out = F.gelu(hidden)
    assert not isinstance(out.grad_fn, _RecomputedGelu._backward_cls)
    (expected,) = torch.autograd.grad(F.gelu(F.linear(x, W1, B1)), x, ROW.expand(2, 5, 8))
    (got,) = torch.autograd.grad(out, x, ROW.expand(2, 5, 8))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
