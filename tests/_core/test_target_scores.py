"""utils.target_scores: each sample's target on its output; classifier targets read at once."""

import dataclasses

import pytest
import torch

from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


@dataclasses.dataclass
class Output:
    logits: torch.Tensor


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
