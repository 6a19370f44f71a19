"""Model outputs: structure walking, per-sample slicing, scores."""

import dataclasses
from collections import OrderedDict, namedtuple

import pytest
import torch

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.outputs import (
    classifier_logits,
    map_tensors,
    sample_output,
    target_scores,
    tensors_in,
)


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class ModelOutputLike(OrderedDict):
    """Like HuggingFace's ModelOutput: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        return self[name]


Pair = namedtuple("Pair", ["a", "b"])


def test_sample_output_keeps_structure_and_types():
    logits = torch.arange(6.0).view(3, 2)
    out = sample_output({"logits": logits, "scalar": torch.tensor(1.0)}, 1, 3)
    assert out["logits"].tolist() == [2.0, 3.0] and out["scalar"].item() == 1.0
    out = sample_output(Output(logits, torch.tensor(0.5)), 2, 3)
    assert isinstance(out, Output) and out.logits.tolist() == [4.0, 5.0] and out.loss.item() == 0.5
    out = sample_output(ModelOutputLike(logits=logits), 0, 3)
    assert isinstance(out, ModelOutputLike) and out.logits.tolist() == [0.0, 1.0]
    out = sample_output(Pair(logits, [logits]), 1, 3)
    assert isinstance(out, Pair) and out.a.tolist() == [2.0, 3.0] and out.b[0].tolist() == [2.0, 3.0]
    with pytest.raises(TypeError, match="no tensor in it"):
        sample_output("text", 0, 1)


def test_tensors_in_and_map_tensors():
    a, b = torch.zeros(1), torch.ones(1)
    assert [t.item() for t in tensors_in({"x": (a, [b]), "y": 3})] == [0.0, 1.0]
    doubled = map_tensors(lambda t: t * 2, {"x": (a, [b]), "y": 3})
    assert doubled["x"][1][0].item() == 2.0 and doubled["y"] == 3


def test_classifier_logits():
    logits = torch.zeros(2, 5)
    assert classifier_logits(Output(logits)) is logits
    assert classifier_logits({"logits": logits}) is logits
    with pytest.raises(ValueError, match=r"classifier output of shape \(B, num_classes\).* \(2, 5, 4\)"):
        classifier_logits(torch.zeros(2, 5, 4))


def test_target_scores():
    outputs = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    scores = target_scores([lambda o: o[1], lambda o: o[0] * 10], outputs, 2)
    assert scores.tolist() == [2.0, 30.0] and scores.dtype == torch.float32
    with pytest.raises(ValueError, match=r"targets\[0\] .* returned a tensor of shape \(2,\)"):
        target_scores([lambda o: o, lambda o: o[0]], outputs, 2)


class CountingTarget(ClassifierOutputTarget):
    """A subclass: scored one sample at a time, as any callable (the calls are counted)."""

    calls = 0

    def __call__(self, model_output):
        CountingTarget.calls += 1
        return super().__call__(model_output)


@pytest.mark.parametrize("wrap", [lambda t: t, lambda t: {"logits": t, "aux": t[:, :1]}, lambda t: Output(t)])
def test_classifier_targets_are_read_from_the_batch_at_once(wrap):
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)).double()
    categories = [3, 0, 6, 3, 1]
    outputs = wrap(logits)
    got = target_scores([ClassifierOutputTarget(k) for k in categories], outputs, 5)
    CountingTarget.calls = 0
    one_by_one = target_scores([CountingTarget(k) for k in categories], outputs, 5)
    assert CountingTarget.calls == 5
    assert got.dtype == torch.float32 and torch.equal(got, one_by_one)
    assert got.tolist() == [logits[i, k].float().item() for i, k in enumerate(categories)]
    with pytest.raises(ValueError, match="category 7 is out of range .* 7 classes"):
        target_scores([ClassifierOutputTarget(7)] * 5, outputs, 5)
