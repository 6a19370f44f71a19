"""Clips given frames first, ``(B, T, C, H, W)`` (``_core/frames_first.py``): maps ``(B, T, H, W)``, one
per frame, equal to those of the model wrapped by hand to take ``(B, C, T, H, W)``."""

from __future__ import annotations

import gc
import warnings
import weakref

import numpy as np
import pytest
import torch
from conftest import FrameNet, assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam import FinerCAM, GradCAM, HiResCAM, ScoreCAM
from pytorch_grad_cam._core.frames_first import FramesFirst, reads_frames_first
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class FramesFirstNet(FrameNet):
    """:class:`FrameNet` taking ``(B, T, 3, H, W)``: its clip read channels first inside, as
    HuggingFace's video models do."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return super().forward(frames.permute(0, 2, 1, 3, 4))


def red_in_frame(frame: int, frames: int = 6) -> torch.Tensor:
    """``(1, frames, 3, 16, 16)``: green everywhere, red in rows and columns 4-11 of one frame."""
    x = torch.zeros(1, frames, 3, 16, 16)
    x[:, :, 1] = 0.5
    x[:, frame, 0, 4:12, 4:12] = 1.0
    return x


class ByHand(nn.Module):
    """What a user wrote before: the model taking ``(B, C, T, H, W)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2))


def test_only_the_frame_with_the_evidence_lights_up():
    model, x = FramesFirstNet().eval(), red_in_frame(3)
    before = model_snapshot(model)
    cam = GradCAM(model)
    maps = cam(x, targets=[ClassifierOutputTarget(0)])
    assert_same_model(before, model_snapshot(model))
    assert maps.shape == (1, 6, 16, 16)  # frames, not the 3 colours
    assert cam.layer_choice.name == "pool" and cam.layer_choice.grid == (6, 4, 4)
    per_frame = maps[0].sum(axis=(1, 2))
    assert per_frame[3] > 0 and float(per_frame.sum() - per_frame[3]) == 0.0
    assert cam.model is model
    choice = find_target_layer(model, x)  # called on its own, it reads the clip alike
    assert (choice.name, choice.grid, choice.layer) == ("pool", (6, 4, 4), model.pool)


@pytest.mark.parametrize("method", [GradCAM, HiResCAM, ScoreCAM])
def test_the_maps_of_the_model_wrapped_by_hand(method):
    model, x = (
        FramesFirstNet().eval(),
        red_in_frame(1) + 0.1 * torch.rand(1, 6, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
    )
    hand = ByHand(model)
    got = method(model, [model.features])(x, [1])
    expected = method(hand, [model.features])(x.transpose(1, 2), [1])
    np.testing.assert_array_equal(got, expected)
    auto = method(model)(x, [1])
    np.testing.assert_array_equal(auto, method(hand)(x.transpose(1, 2), [1]))


def test_finer_cam_keeps_its_call_options():
    """FinerCAM's alpha and comparison classes reach the call on the clip read channels first (the
    clip's call ran FinerCAM's own _maps again, with the defaults: [1, 2, 3] refused on 2 classes)."""
    model = FramesFirstNet().eval()
    x = red_in_frame(1) + 0.1 * torch.rand(1, 6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    hand = ByHand(model)
    maps = {}
    for alpha in (0.0, 3.0):
        got = FinerCAM(model, [model.features])(x, alpha=alpha, comparison_categories=[1])
        expected = FinerCAM(hand, [model.features])(x.transpose(1, 2), alpha=alpha, comparison_categories=[1])
        np.testing.assert_array_equal(got, expected)
        maps[alpha] = got
    assert np.abs(maps[0.0] - maps[3.0]).max() > 0.1  # alpha changes the answer here


def test_a_clip_among_several_inputs_is_not_kept():
    """A frames-first clip given as the model's one positional input (the several-inputs path): the
    maps of the tensor call, and the CAM keeps no wrapper of that call (it held the inputs)."""
    model, x = FramesFirstNet().eval(), red_in_frame(1)
    cam = GradCAM(model)
    expected = cam(x, [0])
    (got,) = cam((x,), [0])
    np.testing.assert_array_equal(got, expected)
    ref = weakref.ref(x)
    del x
    gc.collect()
    assert ref() is None


def test_a_later_call_finds_the_choice_cached():
    model, x = FramesFirstNet().eval(), red_in_frame(2)
    cam = GradCAM(model)
    cam(x, [0])
    batches = []
    handle = model.register_forward_pre_hook(lambda module, args: batches.append(tuple(args[0].shape)))
    try:
        cam(x, [0])
    finally:
        handle.remove()
    assert batches == [(1, 6, 3, 16, 16)]  # one forward, the clip as the model takes it


def test_which_clips_read_frames_first():
    model = FramesFirstNet()
    assert reads_frames_first(model, torch.zeros(1, 6, 3, 8, 8))
    assert not reads_frames_first(model, torch.zeros(1, 3, 6, 8, 8))  # channels first: torchvision's
    assert not reads_frames_first(model, torch.zeros(1, 3, 3, 8, 8))  # as many frames as channels
    assert not reads_frames_first(model, torch.zeros(1, 3, 8, 8))  # an image
    assert not reads_frames_first(nn.Linear(3, 2), torch.zeros(1, 6, 3, 8, 8))  # no convolution
    assert FramesFirst(model)(torch.zeros(1, 3, 6, 8, 8)).shape == (1, 2)


def test_a_refusal_names_the_clip_as_given():
    """An image model given a 5-D clip: the refusal names the shape the user gave (it named the
    channels-first reading, (1, 3, 4, 8, 8), as if the user had passed that)."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    given = r"shape \(1, 4, 3, 8, 8\) \(read as \(1, 3, 4, 8, 8\), frames first\)"
    with pytest.raises(ValueError, match=given):
        GradCAM(model)(torch.zeros(1, 4, 3, 8, 8), [0])
    with pytest.raises(ValueError, match=given):
        find_target_layer(model, torch.zeros(1, 4, 3, 8, 8))


def hf_video(name: str) -> tuple[nn.Module, torch.Tensor]:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, num_frames=4,
    )  # fmt: skip
    if name == "videomae":
        config = transformers.VideoMAEConfig(tubelet_size=2, **common)
        model = transformers.VideoMAEForVideoClassification(config)
    elif name == "vivit":
        config = transformers.VivitConfig(tubelet_size=[2, 8, 8], video_size=[4, 32, 32], **common)
        model = transformers.VivitForVideoClassification(config)
    else:
        model = transformers.TimesformerForVideoClassification(transformers.TimesformerConfig(**common))
    return model.eval(), torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("name", "layer"),
    [("videomae", "videomae.encoder.layer.1.output"), ("vivit", "vivit.layers.1.layernorm_before")],
)
def test_huggingface_video_models(name, layer):
    model, x = hf_video(name)
    cam = GradCAM(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = cam(x)
    assert maps.shape == (1, 4, 32, 32)  # before: (1, 3, 32, 32), the token frames laid on the colours
    assert cam.layer_choice.name == layer and cam.layer_choice.grid == (2, 4, 4)
    per_frame = maps[0].sum(axis=(1, 2))
    assert per_frame.min() > 0


def test_timesformer_is_refused_with_its_own_module_names():
    """Its tokens are ordered rows x columns x frames; read as frames x rows x columns, 64 tokens split
    as 1x8x8 and 4x4x4 alike, and no map settles it: refused, naming its modules as the user does."""
    model, x = hf_video("timesformer")
    named = r"grid of timesformer\.encoder\.layer\.1\.temporal_dense \(Linear\)"
    with pytest.raises(ValueError, match=named):
        GradCAM(model)(x)
    with pytest.raises(ValueError, match=named):  # the search called on its own names them alike
        find_target_layer(model, x)
