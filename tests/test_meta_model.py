"""A model on the ``meta`` device (built without data) is refused up front, with no forward pass."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import LAYER_METHODS, SmallConvNet

from pytorch_grad_cam import DeepFeatureFactorization, GuidedBackpropReLUModel
from pytorch_grad_cam._core.validation import check_model_has_data
from pytorch_grad_cam.metrics.arcc import ARCC
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.deletion_insertion import DeletionInsertion
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.registry import METHODS

MESSAGE = r"model has 16 parameters and buffers on the 'meta' device.*block1\.0\.weight.*to_empty"


def meta_model():
    with torch.device("meta"):
        model = SmallConvNet()
    calls = []
    model.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    return model.eval(), calls


def make(name, model, layers, **kwargs):
    cls = METHODS[name].cls
    if "seed" in inspect.signature(cls).parameters:
        kwargs.setdefault("seed", 0)
    return cls(model, layers, **kwargs)


def test_check_model_has_data_names_the_first_tensors():
    model, _ = meta_model()
    with pytest.raises(ValueError, match=MESSAGE) as error:
        check_model_has_data(model)
    message = str(error.value)
    # the first few names, and how many more
    assert "block1.0.weight, block1.0.bias, block1.1.weight" in message and "and 13 more" in message
    assert "load_state_dict" in message
    # one meta buffer among real tensors is found too
    real = SmallConvNet()
    real.block2[1].running_var = torch.empty(16, device="meta")
    one = r"model has 1 parameter or buffer on the 'meta' device.*\(block2\.1\.running_var\)"
    with pytest.raises(ValueError, match=one):
        check_model_has_data(real)
    check_model_has_data(SmallConvNet())


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_method_refuses_a_meta_model_before_any_forward(name, images):
    model, calls = meta_model()
    cam = make(name, model, [model.block2])
    with pytest.raises(ValueError, match=MESSAGE):
        cam(images(1, size=8))
    assert calls == []
    with pytest.raises(ValueError, match=MESSAGE):
        make(name, model, [model.block2], device="cpu")


def test_other_entry_points_refuse_a_meta_model(images):
    model, calls = meta_model()
    x = images(1, size=8)
    cams = np.ones((1, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=MESSAGE):
        GuidedBackpropReLUModel(model)(x)
    with pytest.raises(ValueError, match=MESSAGE):
        GuidedBackpropReLUModel(model, device="cpu")
    with pytest.raises(ValueError, match=MESSAGE):
        DeepFeatureFactorization(model, model.block2)(x, n_components=2)
    for metric in (CamMultImageConfidenceChange(), ROADMostRelevantFirst(percentile=50), DeletionInsertion()):
        with pytest.raises(ValueError, match=MESSAGE):
            metric(x, cams, None, model)
    with pytest.raises(ValueError, match=MESSAGE):
        ARCC(METHODS["gradcam"].cls(model, [model.block2]))(x, cams, None, model)
    assert calls == []


def test_materialised_model_works(images):
    model, _ = meta_model()
    real = SmallConvNet().eval()
    model.to_empty(device="cpu")
    model.load_state_dict(real.state_dict())
    x = images(2, size=8)
    cam = METHODS["gradcam"].cls
    np.testing.assert_array_equal(cam(model, [model.block2])(x, [0, 1]), cam(real, [real.block2])(x, [0, 1]))
