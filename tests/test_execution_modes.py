"""The modes users call a CAM in: each gives the plain case's CAM within a tolerance taken from the
dtype, or one clear error naming the cause and what to do; the model is left as it was either way.

Tolerances (maps are in [0, 1]):
- the same float32 arithmetic in the same order: exact (0);
- float32 arithmetic in another order (a weight recomputed by a parametrization): 2**-16, that is
  2**7 roundings of float32's unit roundoff 2**-23 (observed: below 2e-6);
- an int8-quantized layer after the target layer (gradient-free methods): 1/127, one step of the
  symmetric int8 range the weights are rounded to (observed: below 2e-4).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn.utils.prune
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.registry import METHODS

FLOAT32_REORDERED = 2.0**-16
INT8_STEP = 1.0 / 127

CNN_NAMES = sorted(name for name, info in METHODS.items() if not issubclass(info.cls, AttentionCAM))
#: CAM reads the final nn.Linear's weights, which a quantized model no longer has (tested apart)
GRADIENT_FREE = [name for name in CNN_NAMES if not METHODS[name].cls.uses_gradients and name != "cam"]
GRADIENT = [name for name in CNN_NAMES if METHODS[name].cls.uses_gradients]


class Net(nn.Module):
    """conv-relu-conv-relu -> mean -> dropout -> linear (the dropout changes a train-mode forward)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()
        )
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x).mean((2, 3))))


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _cam(name: str, model: nn.Module, layer: nn.Module, context=None) -> np.ndarray:
    cls = METHODS[name].cls
    kwargs = {"seed": 0} if "seed" in inspect.signature(cls).parameters else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blank-map notes on this small random model
        with context or contextlib.nullcontext():
            return cls(model, [layer], **kwargs)(X, [1, 2] if cls.uses_targets else None)


def _plain(name: str) -> np.ndarray:
    model = Net().eval()
    return _cam(name, model, model.features)


@pytest.mark.parametrize("name", CNN_NAMES)
def test_no_grad_inference_mode_autocast_and_train_mode_give_the_plain_cam_exactly(name):
    expected = _plain(name)
    contexts = {
        "no_grad": torch.no_grad,
        "inference_mode": torch.inference_mode,
        "autocast cpu bfloat16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }
    for label, context in contexts.items():
        model = Net().eval()
        before = model_snapshot(model)
        np.testing.assert_array_equal(_cam(name, model, model.features, context()), expected, err_msg=label)
        assert_same_model(before, model_snapshot(model))
    model = Net().train()  # dropout active: the CAM is computed with the eval flags, restored after
    before = model_snapshot(model)
    np.testing.assert_array_equal(_cam(name, model, model.features), expected)
    assert_same_model(before, model_snapshot(model)) and model.training and model.drop.training
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("name", CNN_NAMES)
def test_weight_norm_and_pruned_layers_give_the_cam_of_their_plain_weights(name):
    plain = Net().eval()
    model = Net().eval()
    nn.utils.parametrizations.weight_norm(model.features[2])
    with torch.no_grad():
        plain.features[2].weight.copy_(model.features[2].weight)  # g * v / |v|, as the forward sees it
    expected = _cam(name, plain, plain.features)
    before = model_snapshot(model)
    original = model.features[2].parametrizations.weight.original0.clone()
    got = _cam(name, model, model.features)
    assert np.abs(got - expected).max() <= FLOAT32_REORDERED
    assert_same_model(before, model_snapshot(model))
    assert nn.utils.parametrize.is_parametrized(model.features[2], "weight")
    assert torch.equal(model.features[2].parametrizations.weight.original0, original)

    model = Net().eval()
    nn.utils.prune.l1_unstructured(model.features[2], "weight", amount=0.3)
    plain = Net().eval()
    with torch.no_grad():
        plain.features[2].weight.copy_(model.features[2].weight_orig * model.features[2].weight_mask)
    expected = _cam(name, plain, plain.features)
    before = model_snapshot(model)
    mask = model.features[2].weight_mask.clone()
    got = _cam(name, model, model.features)
    assert np.abs(got - expected).max() <= FLOAT32_REORDERED
    assert_same_model(before, model_snapshot(model))  # the pruning hook, mask and weight_orig too
    assert torch.equal(model.features[2].weight_mask, mask)


@pytest.mark.parametrize("name", CNN_NAMES)
def test_a_scripted_or_traced_model_is_one_error_naming_torchscript(name):
    for make in (torch.jit.script, lambda m: torch.jit.trace(m, X)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's own deprecation notes
            compiled = make(Net().eval())
        before = model_snapshot(compiled)
        with pytest.raises(TypeError, match=r"model is a TorchScript module .* explain the nn.Module"):
            _cam(name, compiled, compiled.features)
        assert_same_model(before, model_snapshot(compiled))
    eager = Net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager.features = torch.jit.script(eager.features)  # only the target layer is scripted
    scripted = r"model\.features" if name == "fullgrad" else r"target_layers\[0\]"  # FullGrad: every layer
    with pytest.raises(TypeError, match=rf"{scripted} is a TorchScript module"):
        _cam(name, eager, eager.features)


def _quantized() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notes
        return torch.ao.quantization.quantize_dynamic(Net().eval(), {nn.Linear}, dtype=torch.qint8)


def _quantized_snapshot(model: nn.Module) -> dict:
    """:func:`model_snapshot` for a quantized model (its packed int8 weights read back as floats)."""
    return {
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grads": [(name, p.grad) for name, p in model.named_parameters()],
        "hooks": [
            (name, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()
        ],
        "modules": [(name, id(m)) for name, m in model.named_modules()],
        "fc": (model.fc.weight().dequantize().tolist(), model.fc.bias().tolist()),
        "features": [v.tolist() for v in model.features.state_dict().values()],
    }


@pytest.mark.parametrize("name", GRADIENT)
def test_a_gradient_method_on_a_quantized_model_is_one_error_naming_the_layer(name):
    model = _quantized()
    before = _quantized_snapshot(model)
    with pytest.raises(ValueError, match=r"model has quantized layers \(fc: .*\) that have no gradients"):
        _cam(name, model, model.features)
    assert _quantized_snapshot(model) == before


@pytest.mark.parametrize("name", GRADIENT_FREE)
def test_a_gradient_free_method_on_a_quantized_model_is_within_one_int8_step(name):
    model = _quantized()
    before = _quantized_snapshot(model)
    got = _cam(name, model, model.features)
    assert np.abs(got - _plain(name)).max() <= INT8_STEP
    assert _quantized_snapshot(model) == before


def test_cam_on_a_quantized_model_says_it_needs_the_final_linear_layer():
    model = _quantized()
    with pytest.raises(ValueError, match="CAM needs the final linear layer"):
        _cam("cam", model, model.features)


def test_guided_backprop_under_autocast_and_on_scripted_or_quantized_models():
    from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel

    model = Net().eval()
    expected = GuidedBackpropReLUModel(model)(X, [1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        np.testing.assert_array_equal(GuidedBackpropReLUModel(model)(X, [1, 2]), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(Net().eval())
    with pytest.raises(TypeError, match="model is a TorchScript module"):
        GuidedBackpropReLUModel(scripted)
    with pytest.raises(
        ValueError, match="model has quantized layers .* guided backpropagation needs gradients"
    ):
        GuidedBackpropReLUModel(_quantized())(X, [1, 2])
