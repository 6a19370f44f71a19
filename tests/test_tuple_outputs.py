"""Models that return several things: the classifier scores are found by one rule everywhere.

The rule (:func:`pytorch_grad_cam._core.outputs.find_scores`): a ``logits`` entry of a mapping or
dataclass first, else the first tensor, depth-first in order, of the shape the reader needs. Each
check compares a model returning a structure with the same model returning its logits alone.
"""

from __future__ import annotations

import inspect
from collections import namedtuple

import numpy as np
import pytest
import torch
from conftest import LAYER_METHODS, SmallConvNet
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from pytorch_grad_cam._core.outputs import classifier_logits, find_scores, sample_output
from pytorch_grad_cam._core.target_scores import target_scores
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.deletion_insertion import DeletionInsertion
from pytorch_grad_cam.metrics.road import ROADMostRelevantFirst
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.model_targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FinerWeightedTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    SimilarityToConceptTarget,
    SoftmaxOutputTarget,
)

#: torchvision's GoogLeNet in training mode returns this (logits first, then the two aux heads).
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])


def googlenet_style(logits, features):
    return GoogLeNetOutputs(logits, logits[:, :3] * 2.0, logits.flip(-1))


def nested(logits, features):
    # a feature map (not a (B, K) tensor) first: the logits are the first (B, K) tensor
    return ((features, [logits, logits * 3.0]), features.mean(dim=1))


def dict_without_logits(logits, features):
    return {"features": features, "scores": logits, "aux": logits - 1.0}


def hf_output(logits, features):
    # a (B, K) tensor before the 'logits' key: 'logits' still wins
    return {"pooled": features.mean(dim=(2, 3)), "logits": logits}


def model_output(logits, features):
    return ImageClassifierOutput(logits=logits, hidden_states=(features,))


WRAPS = {
    "googlenet_style": googlenet_style,
    "nested": nested,
    "dict_without_logits": dict_without_logits,
    "dict_with_logits": hf_output,
    "hf_model_output": model_output,
}


class StructuredNet(nn.Module):
    """SmallConvNet's modules and numbers, returning ``wrap(logits, block2 features)``."""

    def __init__(self, net: SmallConvNet, wrap) -> None:
        super().__init__()
        self.net = net
        self.wrap = wrap

    def forward(self, x):
        net = self.net
        features = net.block2(net.block1(x))
        logits = net.fc(net.pool(features).flatten(1))
        return self.wrap(logits, features.clone())


def make(name, model, layers):
    cls = METHODS[name].cls
    kwargs = {"seed": 0} if "seed" in inspect.signature(cls).parameters else {}
    return cls(model, layers, **kwargs)


@pytest.mark.parametrize("wrap", sorted(WRAPS))
@pytest.mark.parametrize("name", LAYER_METHODS)
def test_every_method_gives_the_logits_only_maps(name, wrap, images):
    plain = SmallConvNet().eval()
    structured = StructuredNet(plain, WRAPS[wrap]).eval()
    x = images(2, size=16, seed=3)
    targets = [1, 3] if METHODS[name].cls.uses_targets else None
    for chosen in (None, targets):
        expected = make(name, plain, [plain.block2])(x, chosen)
        got = make(name, structured, [plain.block2])(x, chosen)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_classifier_logits_follows_the_rule():
    logits = torch.arange(6.0).view(2, 3)
    features = torch.zeros(2, 4, 3, 3)
    for wrap in WRAPS.values():
        assert torch.equal(classifier_logits(wrap(logits, features)), logits)
    assert classifier_logits((torch.zeros(2), (torch.ones(2, 1, 1), logits))) is logits
    # a nested container's logits entry comes first too
    assert classifier_logits(({"pooled": torch.ones(2, 3), "logits": logits}, torch.ones(2, 3))) is logits
    # a dataclass's logits field and a mapping's logits key come before the order
    assert classifier_logits(ImageClassifierOutput(logits=logits, hidden_states=(logits * 2,))) is logits
    with pytest.raises(ValueError) as error:
        classifier_logits((features, torch.zeros(2)))
    message = str(error.value)
    assert "(B, num_classes)" in message and "[(2, 4, 3, 3), (2,)]" in message and "targets=[...]" in message


def test_find_scores_rule_and_errors():
    a, b = torch.zeros(2, 3), torch.ones(2, 5)
    assert find_scores((torch.zeros(2, 1, 1, 1), a, b), dims=2, batch_size=2) is a
    # a (K,) vector is one sample's scores: the first 1-D tensor
    first, second = b[0], a[0]
    assert find_scores((torch.zeros(4, 4), first, second), dims=1) is first
    # the batch axis must match where the batch size is known
    assert find_scores((torch.zeros(3, 4), a), dims=2, batch_size=2) is a
    # a bare tensor is the output itself, whatever its shape (the reader checks it)
    t = torch.zeros(2, 5, 4)
    assert find_scores(t, dims=2, batch_size=2) is t
    assert find_scores({"logits": t, "x": a}, dims=2) is t
    with pytest.raises(ValueError, match=r"found no tensor of 1 dimension in .*shapes \[\(\), \(3, 3\)\]"):
        find_scores((torch.tensor(1.0), torch.zeros(3, 3)), dims=1)
    with pytest.raises(TypeError, match="no tensor in it"):
        find_scores(("a", 1), dims=1)


TARGETS = [
    ClassifierOutputTarget(2),
    ClassifierOutputSoftmaxTarget(1),
    ClassifierOutputReST(3),
    FinerWeightedTarget(2, [0, 4], alpha=0.7),
    SoftmaxOutputTarget(),
    RawScoresOutputTarget(),
]


@pytest.mark.parametrize("wrap", sorted(WRAPS))
@pytest.mark.parametrize("target", TARGETS, ids=repr)
def test_each_classifier_target_reads_the_logits(target, wrap):
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    features = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(2))
    outputs = WRAPS[wrap](logits, features)
    for index in range(3):
        expected = target(logits[index])
        assert torch.equal(target(sample_output(outputs, index, 3)), expected)
    if isinstance(target, ClassifierOutputTarget):
        # the batched fast path and a target per sample agree
        assert torch.equal(target_scores([target] * 3, outputs, 3), target_scores([target] * 3, logits, 3))


def test_classifier_targets_on_the_batch_and_the_rule_message():
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    # a bare batch of scores is read as in 1.5.x; a structure is read as one sample's output
    assert torch.equal(ClassifierOutputTarget(4)(logits), logits[:, 4])
    assert torch.equal(ClassifierOutputTarget(4)((logits[0], torch.zeros(2, 2, 2))), logits[0, 4])
    with pytest.raises(
        ValueError, match=r"ClassifierOutputTarget\(1\) needs a tensor of class scores"
    ) as error:
        ClassifierOutputTarget(1)((torch.zeros(4, 2, 2), torch.tensor(0.5)))
    assert "lambda output: output[1][k]" in str(error.value)


def test_binary_and_similarity_targets():
    logit = torch.tensor([[0.5], [-2.0]])
    outputs = (logit, torch.zeros(2, 3, 2, 2))
    for category, sign in ((1, 1.0), (0, -1.0)):
        target = BinaryClassifierOutputTarget(category)
        assert [target(sample_output(outputs, i, 2)).item() for i in range(2)] == [0.5 * sign, -2.0 * sign]
    embedding = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    target = SimilarityToConceptTarget(torch.tensor([1.0, 0.0]))
    scores = [
        target(sample_output({"embedding": embedding, "map": torch.zeros(2, 1, 2, 2)}, i, 2))
        for i in range(2)
    ]
    assert torch.allclose(torch.stack(scores), torch.tensor([0.6, 1.0]))


def test_segmentation_target_on_torchvision_style_dicts():
    out = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(4, 4)
    mask[1:3, 2] = 1
    target = SemanticSegmentationTarget(2, mask)
    for index in range(2):
        expected = out[index, 2, 1:3, 2].sum()
        # torchvision's segmentation models: OrderedDict(out=..., aux=...)
        got = target(sample_output({"out": out, "aux": out * 5}, index, 2))
        assert torch.allclose(got, expected)
        # HuggingFace (SegFormer): a ModelOutput with logits
        got = target(sample_output(ImageClassifierOutput(logits=out), index, 2))
        assert torch.allclose(got, expected)
    with pytest.raises(ValueError, match=r"SemanticSegmentationTarget.* \(N, H, W\)"):
        target(({"a": torch.zeros(3)},))


@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_metrics_on_structured_outputs(wrap, images):
    plain = SmallConvNet().eval()
    structured = StructuredNet(plain, WRAPS[wrap]).eval()
    x = images(2, size=16, seed=4)
    cams = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    metrics = [
        CamMultImageConfidenceChange(),
        ROADMostRelevantFirst(percentile=50),
        DeletionInsertion(steps=4),
    ]
    for metric in metrics:
        for targets in (None, [ClassifierOutputTarget(2), ClassifierOutputSoftmaxTarget(0)]):
            torch.manual_seed(0)  # ROAD's imputer adds noise
            expected = metric(x, cams, targets, plain)
            torch.manual_seed(0)
            got = metric(x, cams, targets, structured)
            np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_guided_backprop_on_structured_outputs(wrap, images):
    from pytorch_grad_cam import GuidedBackpropReLUModel

    plain = SmallConvNet().eval()
    structured = StructuredNet(plain, WRAPS[wrap]).eval()
    x = images(2, size=8, seed=5)
    for targets in (None, [2, 0]):
        expected = GuidedBackpropReLUModel(plain)(x, targets)
        np.testing.assert_allclose(GuidedBackpropReLUModel(structured)(x, targets), expected, atol=1e-6)
