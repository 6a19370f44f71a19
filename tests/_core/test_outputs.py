"""Model outputs: structure walking, per-sample slicing, scores."""

import dataclasses
from collections import OrderedDict, namedtuple

import pytest
import torch

from pytorch_grad_cam._core.outputs import (
    classifier_logits,
    map_tensors,
    sample_output,
    tensors_in,
)
from pytorch_grad_cam._core.target_scores import top_class_targets


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


def test_one_pooling_querys_scores_are_the_classifier_output():
    queried = torch.tensor([[[0.1, 0.9, 0.3]], [[2.0, -1.0, 0.5]]])  # (B, 1, K): VideoPrism's logits
    assert classifier_logits(Output(queried)).tolist() == queried[:, 0].tolist()
    assert [t.category for t in top_class_targets(Output(queried))] == [1, 0]
    with pytest.raises(ValueError, match=r"\(2, 2, 3\)"):  # two queries: not one score per class
        classifier_logits(torch.zeros(2, 2, 3))
