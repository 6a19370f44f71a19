"""The pure functions of the perturbation methods, by hand-computed values (no models, no hooks)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pytorch_grad_cam._core import perturbation as P
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform


def test_upsample_align_corners_true_and_false():
    maps = torch.tensor([[[0.0, 2.0]]])  # (1, 1, 2)
    # align_corners=True: the corners stay put, the middle is their mean
    torch.testing.assert_close(
        P.upsample(maps, (1, 3), align_corners=True), torch.tensor([[[0.0, 1.0, 2.0]]])
    )
    # align_corners=False (half-pixel centres): output i samples x = (i + 0.5) / 2 - 0.5, clamped
    torch.testing.assert_close(
        P.upsample(maps, (1, 4), align_corners=False), torch.tensor([[[0.0, 0.5, 1.5, 2.0]]])
    )
    assert P.upsample(torch.zeros(2, 2, 2, 2), (4, 4, 4), align_corners=True).shape == (2, 4, 4, 4)
    with pytest.raises(ValueError, match="does not match"):
        P.upsample(maps, (1, 2, 3), align_corners=True)


def test_min_max_masks_and_score_cam_masks():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]]])
    expected = torch.tensor([[[0.0, 2.0], [4.0, 4.0]]]) / (4.0 + 1e-8)
    torch.testing.assert_close(P.min_max_masks(maps)[:1], expected)
    assert torch.equal(P.min_max_masks(maps)[1], torch.zeros(2, 2))  # constant: all zero
    # ScoreCAM: upsample first (align_corners=True), then normalise
    channels = torch.tensor([[[0.0, 2.0]], [[-1.0, -3.0]]])
    masks = P.score_cam_masks(channels, (1, 3))
    torch.testing.assert_close(masks[0], torch.tensor([[0.0, 1.0, 2.0]]) / (2 + 1e-8))
    torch.testing.assert_close(masks[1], torch.tensor([[2.0, 1.0, 0.0]]) / (2 + 1e-8))


def test_torchcam_normalize():
    channels = torch.tensor([[[2.0, 4.0, 6.0]], [[-1.0, -1.0, -1.0]]])
    out = P.torchcam_normalize(channels)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 2.0, 4.0]]) / (4 + 1e-8))
    assert torch.equal(out[1], torch.zeros(1, 3))


def test_unique_rows():
    a, b = [1.0, 2.0], [0.5, -1.0]
    keys = torch.tensor([a, b, a, [0.0, 0.0], [-0.0, 0.0], b])
    first, inverse = P.unique_rows(keys)
    assert first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 2, 1]
    torch.testing.assert_close(keys[first][inverse], keys)
    first, inverse = P.unique_rows(torch.zeros(3, 2, 2))  # rows may have any shape
    assert first.tolist() == [0] and inverse.tolist() == [0, 0, 0]


def test_ablation_values():
    outputs = torch.tensor([[[0.0, 1.0]], [[-2.0, 3.0]], [[0.5, 2.0]]])
    values = P.ablation_values(outputs)
    assert values.tolist() == [0.0, -2.0 - 1e7, 0.0]  # -10000002 is exact in float32
    assert values.dtype == torch.float32


def test_relative_score_drop_and_the_zero_score_rule():
    scores = torch.tensor([2.0, -1.0, 0.0])
    ablated = torch.tensor([[1.0, 3.0], [-2.0, -0.5], [1.5, -2.0]])
    weights = P.relative_score_drop(scores, ablated)
    expected = torch.tensor(
        [
            [(2 - 1) / 2, (2 - 3) / 2],
            [(-1 + 2) / -1, (-1 + 0.5) / -1],
            [0 - 1.5, 0 + 2.0],  # y == 0: the absolute drop y - y_k
        ]
    )
    torch.testing.assert_close(weights, expected)
    assert torch.isfinite(weights).all()


def test_channels_to_ablate():
    # mean |A| per channel: 1, 3, 2, 3
    activations = torch.tensor([[1.0, -1.0], [3.0, 3.0], [-2.0, 2.0], [0.0, 6.0]])
    assert P.channels_to_ablate(activations, 1.0).tolist() == [0, 1, 2, 3]
    assert P.channels_to_ablate(activations, 0.5).tolist() == [1, 3]  # int(0.5 * 4) = 2 strongest
    assert P.channels_to_ablate(activations, 0.75).tolist() == [1, 2, 3]
    assert P.channels_to_ablate(activations, 0.25).tolist() == [1]  # a tie keeps the lower index
    assert P.channels_to_ablate(activations, 0.01).tolist() == [1]  # at least one


def test_channel_layout_without_transform():
    layout = P.channel_layout((3, 2, 2))
    assert layout.axis == 1 and layout.index.tolist() == [0, 1, 2] and layout.channels == 3


def test_channel_layout_of_a_vit_transform_is_the_last_axis_with_every_token():
    layout = P.channel_layout((1 + 4, 3), lambda t: vit_reshape_transform(t, 2, 2))
    assert layout.axis == 2 and layout.index.tolist() == [0, 1, 2]


def test_channel_layout_follows_a_permutation_of_channels():
    layout = P.channel_layout((3, 2, 2), lambda t: t.flip(1))
    assert layout.axis == 1 and layout.index.tolist() == [2, 1, 0]


def test_channel_layout_general_positions():
    # (B, 4, 2) -> (B, 2, 2, 2): channel k is raw rows 2k and 2k + 1, no single raw axis
    layout = P.channel_layout((4, 2), lambda t: t.reshape(t.shape[0], 2, 2, 2))
    assert layout.axis is None
    assert layout.index.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_channel_layout_of_a_float_only_transform():
    def float_only(t):
        if not t.is_floating_point():
            raise TypeError("floats please")
        return t.permute(0, 2, 1).unsqueeze(-1)

    layout = P.channel_layout((5, 3), float_only)
    assert layout.axis == 2 and layout.index.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "transform",
    [
        lambda t: F.interpolate(t.double(), scale_factor=2, mode="bilinear"),  # arithmetic
        lambda t: (t, t),  # not a tensor
        lambda t: t * 2,  # positions out of range
        lambda t: t[0],  # no batch axis
    ],
)
def test_channel_layout_rejects_transforms_that_do_arithmetic(transform):
    with pytest.raises(ValueError, match="only select, reshape and permute"):
        P.channel_layout((2, 3, 3), transform)


def test_ablate_channels_along_an_axis():
    output = torch.arange(12.0).reshape(1, 3, 2, 2)
    layout = P.channel_layout((3, 2, 2))
    result = P.ablate_channels(output, torch.tensor([-1, 0, 2]), layout, torch.tensor([9.0, 7.0, -5.0]))
    assert result.shape == (3, 3, 2, 2)
    expected = output.repeat(3, 1, 1, 1)
    expected[1, 0] = 7.0
    expected[2, 2] = -5.0
    assert torch.equal(result, expected)
    assert torch.equal(output, torch.arange(12.0).reshape(1, 3, 2, 2))  # not modified
    # a batch of K outputs: copy i is ablated in place of repeating
    batch = torch.stack([output[0], output[0] + 100])
    result = P.ablate_channels(batch, torch.tensor([1, 1]), layout, torch.zeros(2))
    assert torch.equal(result[1, 0], batch[1, 0]) and torch.equal(result[1, 1], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="batch 1 or 3"):
        P.ablate_channels(batch, torch.tensor([0, 1, 2]), layout, torch.zeros(3))


def test_unchanged_by_ablation():
    relu_out = torch.tensor([[[0.0, 0.0]], [[0.0, 2.0]], [[0.0, 0.0]]])  # (C=3, 1, 2)
    assert P.unchanged_by_ablation(relu_out).tolist() == [True, False, True]
    # negative values: channels go to min - 1e7, which none holds
    assert P.unchanged_by_ablation(relu_out - 1).tolist() == [False, False, False]
    assert P.unchanged_by_ablation(torch.zeros(2, 0)).tolist() == [False, False]


def test_ablate_pooled_by_hand():
    pooled = torch.tensor([[[1.0], [2.0], [3.0]]])  # (1, C=3, 1)
    pooled_ablated = torch.tensor([[[-7.0], [-8.0], [-9.0]]])
    result = P.ablate_pooled(pooled, pooled_ablated, torch.tensor([-1, 2, 0, 2]))
    assert result[..., 0].tolist() == [[1, 2, 3], [1, 2, -9], [-7, 2, 3], [1, 2, -9]]
    assert pooled.flatten().tolist() == [1, 2, 3]  # not modified
    # a pooled output with positions: the whole channel is taken from pooled_ablated
    pooled = torch.arange(8.0).reshape(1, 2, 2, 2)
    result = P.ablate_pooled(pooled, -pooled - 1, torch.tensor([1]))
    assert result[0, 0].flatten().tolist() == [0, 1, 2, 3]
    assert result[0, 1].flatten().tolist() == [-5, -6, -7, -8]
    # equals pooling the ablated copies of the layer output (average pooling works per channel)
    output = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    layout = P.channel_layout((3, 4, 4))
    channels = torch.tensor([-1, 0, 1, 2])
    copies = P.ablate_channels(output, channels, layout, torch.full((4,), -2.5))
    pool = torch.nn.AvgPool2d(3, stride=2, padding=1)  # borders average in the padding
    fast = P.ablate_pooled(pool(output), pool(torch.full_like(output, -2.5)), channels)
    torch.testing.assert_close(fast, pool(copies), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="both have shape"):
        P.ablate_pooled(pooled.repeat(2, 1, 1, 1), pooled.repeat(2, 1, 1, 1), torch.tensor([0]))


def test_ablate_channels_of_tokens_and_by_positions():
    tokens = torch.arange(15.0).reshape(1, 5, 3)  # (B, 1 + 2*2, C)
    layout = P.channel_layout((5, 3), lambda t: vit_reshape_transform(t, 2, 2))
    result = P.ablate_channels(tokens, torch.tensor([1]), layout, torch.tensor([0.0]))
    expected = tokens.clone()
    expected[:, :, 1] = 0.0  # the class token's channel too
    assert torch.equal(result, expected)

    raw = torch.arange(8.0).reshape(1, 4, 2)
    layout = P.channel_layout((4, 2), lambda t: t.reshape(t.shape[0], 2, 2, 2))
    result = P.ablate_channels(raw, torch.tensor([1, -1]), layout, torch.tensor([-1.0, -1.0]))
    assert result[0].flatten().tolist() == [0, 1, 2, 3, -1, -1, -1, -1]
    assert torch.equal(result[1], raw[0])


@pytest.mark.parametrize(
    "value, error",
    [(0.0, ValueError), (1.5, ValueError), (-0.1, ValueError), (math.nan, ValueError), (True, TypeError)],
)
def test_check_ratio(value, error):
    with pytest.raises(error, match="ratio_channels_to_ablate"):
        P.check_ratio(value)
    assert P.check_ratio(1) == 1.0 and P.check_ratio(0.25) == 0.25
