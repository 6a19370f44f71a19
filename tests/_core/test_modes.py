"""utils.modes: eval flags set and restored without calling a model's own train()/eval()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam import EigenCAM, GradCAM, ScoreCAM
from pytorch_grad_cam._core.modes import model_in_eval_mode, set_eval_flags
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class TrainerLikeWrapper(nn.Module):
    """A wrapper whose ``train`` means "start training" (as ultralytics' ``Model.train``)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))

    def train(self, mode: bool = True):  # noqa: ARG002 - the override the library must not call
        raise AssertionError("the model's own train() was called")

    def eval(self):
        raise AssertionError("the model's own eval() was called")


def test_flags_set_and_restored_without_overrides():
    torch.manual_seed(0)
    model = TrainerLikeWrapper()
    model.net[1].training = False  # a mixed state, restored module by module
    before = [m.training for m in model.modules()]
    with model_in_eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError, match="boom"), model_in_eval_mode(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before
    set_eval_flags(model)
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("method", [GradCAM, EigenCAM, ScoreCAM])
def test_cam_never_calls_train_or_eval(method):
    torch.manual_seed(0)
    model = TrainerLikeWrapper()
    nn.Module.train(model, True)  # train mode: BatchNorm would use batch statistics
    x = torch.randn(2, 3, 8, 8)
    cams = method(model, [model.net[0]])(x, [ClassifierOutputTarget(1)] * 2)
    assert all(m.training for m in model.modules())
    # the map is the eval-mode one: equal to the same model with its flags set to eval
    set_eval_flags(model)
    np.testing.assert_array_equal(cams, method(model, [model.net[0]])(x, [ClassifierOutputTarget(1)] * 2))


def test_metrics_never_call_train_or_eval():
    torch.manual_seed(0)
    model = TrainerLikeWrapper()
    x = torch.randn(1, 3, 8, 8)
    cams = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    ROADMostRelevantFirst(percentile=50)(x, cams, [ClassifierOutputTarget(0)], model)
    assert all(m.training for m in model.modules())


def test_overlapping_calls_from_threads_restore_train_mode():
    # Each call used to save the flags on entry: a call entering while another thread's call had
    # set eval mode saved eval and restored it last, leaving a train-mode model in eval mode.
    import threading

    from pytorch_grad_cam import LayerCAM

    torch.manual_seed(0)
    model = TrainerLikeWrapper()
    nn.Module.train(model, True)
    x = torch.randn(2, 3, 8, 8)
    start = threading.Barrier(4)

    def explain(method):
        start.wait()
        for _ in range(5):
            method(model, [model.net[0]])(x, [ClassifierOutputTarget(1)] * 2)

    threads = [threading.Thread(target=explain, args=(m,)) for m in (GradCAM, EigenCAM, ScoreCAM, LayerCAM)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(m.training for m in model.modules())
