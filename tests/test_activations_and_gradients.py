"""The one-call capture: what it records, what it leaves behind, which graph it builds."""

import pytest
import torch
from torch import nn

from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(inplace=True), nn.Conv2d(3, 2, 1), nn.Flatten()).eval()


def test_hooks_live_only_inside_the_context():
    model = make_model()
    with ActivationsAndGradients(model, [model[0], model[2]]) as capture:
        assert len(model[0]._forward_hooks) == 1 and len(model[2]._forward_hooks) == 1
    assert len(model[0]._forward_hooks) == 0 and len(model[2]._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="inside"), ActivationsAndGradients(model, [model[0]]):
        raise RuntimeError("inside")
    assert len(model[0]._forward_hooks) == 0
    assert capture.missing_layers() == [0, 1]


def test_captured_value_is_the_layer_output_before_inplace_ops():
    model = make_model()
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model[0](x)
    for track in (True, False):
        with ActivationsAndGradients(model, [model[0]], track_gradients=track) as capture, torch.no_grad():
            model(x)
        assert (expected < 0).any()  # the in-place ReLU would have changed these
        torch.testing.assert_close(capture.captured[0].detach(), expected)


def test_gradients_are_those_of_the_slow_full_graph():
    model = make_model()
    x = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with ActivationsAndGradients(model, [model[0], model[2]]) as capture, torch.no_grad():
            out = model(x)
        assert not torch.is_grad_enabled()  # the hook's switch to grad mode did not leak out
    with torch.enable_grad():
        score = (out * torch.arange(out.shape[1])).sum()
    grads = capture.gradients(score)
    # slow definition: a full graph from the input, each output kept and the network continued on
    # a copy of it (so that the in-place ReLU leaves the kept one intact)
    acts = {}

    def keep(index):
        def hook(module, inputs, output):
            acts[index] = output
            return output.clone()

        return hook

    handles = [model[i].register_forward_hook(keep(i)) for i in (0, 2)]
    try:
        full = model(x)
    finally:
        for handle in handles:
            handle.remove()
    g0, g2 = torch.autograd.grad((full * torch.arange(full.shape[1])).sum(), [acts[0], acts[2]])
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(grads[0], g0)
    torch.testing.assert_close(grads[1], g2)
    assert all(p.grad is None for p in model.parameters())


def test_prefix_builds_no_graph():
    model = make_model()
    x = torch.randn(1, 2, 3, 3)
    with ActivationsAndGradients(model, [model[2]]) as capture, torch.no_grad():
        out = model(x)
    leaf = capture.captured[0]
    assert leaf.is_leaf and leaf.requires_grad  # the graph starts at the target layer
    assert out.requires_grad


def test_score_independent_of_layer_gives_zeros():
    model = make_model()
    with ActivationsAndGradients(model, [model[0]]) as capture, torch.no_grad():
        model(torch.randn(1, 2, 3, 3))
    grads = capture.gradients(torch.tensor(1.0))
    torch.testing.assert_close(grads[0], torch.zeros(1, 3, 3, 3))


def test_1_5_call_form_runs_the_model():
    model = make_model()
    x = torch.randn(1, 2, 3, 3)
    with ActivationsAndGradients(model, [model[0]], track_gradients=False) as capture, torch.no_grad():
        out = capture(x)
    torch.testing.assert_close(out, model(x))


def test_first_captured_is_the_first_layer_to_return():
    model = make_model()
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    # listed last, returns first: gradients are on from model[0]'s output, for model[2] too
    with ActivationsAndGradients(model, [model[2], model[0]]) as capture, torch.no_grad():
        model(x)
    assert capture.first_captured == 1
    with ActivationsAndGradients(model, [model[2]], track_gradients=False) as capture, torch.no_grad():
        model(x)
    assert capture.first_captured == 0
    with ActivationsAndGradients(model, [model[2]]) as capture:  # no forward in the context: none
        pass
    assert capture.first_captured is None
