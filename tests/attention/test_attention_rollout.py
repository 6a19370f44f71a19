"""AttentionRollout and GradientRollout on the hand-set ViT of conftest (2 blocks, 2 heads, 4 patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam.attention.rollout import AttentionRollout, GradientRollout
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # tokens t0 = [1 (class), 1, 2, 3, 4]


def test_attention_rollout_by_hand(hand_vit):
    # Block 1 fused (mean) = U/2 + I/2 (U = 1/5 everywhere): norm(A + I) = U/4 + 3I/4, i.e. 0.8 on the
    # diagonal and 0.05 elsewhere. Block 2 fused: every row [0, .5, 0, 0, .5]; norm(A + I) row 0 =
    # [.5, .25, 0, 0, .25]. Class row of R = .5 M1[0] + .25 M1[1] + .25 M1[4]
    # = [.4, .025, .025, .025, .025] + [.0125, .2, .0125, .0125, .0125] + [.0125, .0125, .0125, .0125, .2].
    relevance, prefix, _ = AttentionRollout(hand_vit).token_relevance(X, None)
    assert prefix == 1
    torch.testing.assert_close(relevance, torch.tensor([[0.425, 0.2375, 0.05, 0.05, 0.2375]]))
    cam = AttentionRollout(hand_vit)(X)
    np.testing.assert_allclose(cam, [[[1.0, 0.0], [0.0, 1.0]]], atol=1e-6)


def test_head_fusion_max_and_min_by_hand(hand_vit):
    # max: block 1 fused = 0.2 off the diagonal, 1 on it: row i of A + I is 0.2 everywhere and 2 at i
    # (sum 2.8). Block 2 max: rows [0, 1, 0, 0, 1]; row 0 of A + I = [1, 1, 0, 0, 1], sum 3.
    # R[0] = (M1[0] + M1[1] + M1[4]) / 3 with M1[i] = (0.2 + 1.8 e_i) / 2.8.
    m1 = lambda i: (0.2 + 1.8 * np.eye(5)[i]) / 2.8  # noqa: E731
    expected = (m1(0) + m1(1) + m1(4)) / 3
    relevance, _, _ = AttentionRollout(hand_vit, head_fusion="max").token_relevance(X, None)
    np.testing.assert_allclose(relevance[0].numpy(), expected, rtol=1e-6)
    # min: block 1 fused = 0 off the diagonal, 0.2 on it -> M1 = I; block 2 min: all 0 -> M2 = I; R = I.
    relevance, _, _ = AttentionRollout(hand_vit, head_fusion="min").token_relevance(X, None)
    np.testing.assert_allclose(relevance[0].numpy(), np.eye(5)[0], atol=1e-7)


def test_discard_ratio_changes_the_answer(hand_vit):
    # ratio 0.2 -> 5 of 25 entries per block. Block 2 (mean): 15 zeros; any 5 zeros dropped change nothing.
    # Block 1 (mean): 0.6 on the diagonal, 0.1 elsewhere; 5 of the 0.1s go: rows then sum to less than
    # 2 with I, and are renormalised by their own sums (rows still sum to 1 after rollout).
    relevance, _, _ = AttentionRollout(hand_vit, discard_ratio=0.2).token_relevance(X, None)
    plain, _, _ = AttentionRollout(hand_vit).token_relevance(X, None)
    assert not torch.allclose(relevance, plain)
    torch.testing.assert_close(relevance.sum(), torch.tensor(1.0))


def test_gradient_rollout_by_hand(hand_vit):
    # Score S = t2[0]; t1 = 1.5 t0 + 1.1 = [2.6, 2.6, 4.1, 5.6, 7.1].
    # dS/dP2[h, 0, j] = t1[j] / 2 (other rows 0); dS/dP1[h, i, j] = g_i t0[j] / 2 with g = [1, .5, 0, 0, .5].
    # relu(mean_h(grad * A)) with P1 = U (head 0) and I (head 1): 0.5 (0.2 G1 + diag G1);
    # block 2 row 0 = [0, .65, 0, 0, 1.775]. Block 1 + I, rows 0, 1, 4 (rows 2, 3 are e_2, e_3):
    a1_plus_i = {
        0: np.array([1.3, 0.05, 0.1, 0.15, 0.2]),  # sum 1.8
        1: np.array([0.025, 1.15, 0.05, 0.075, 0.1]),  # sum 1.4
        4: np.array([0.025, 0.025, 0.05, 0.075, 1.6]),  # sum 1.775
    }
    m1 = {i: row / row.sum() for i, row in a1_plus_i.items()}
    expected = (
        1.0 * m1[0] + 0.65 * m1[1] + 1.775 * m1[4]
    ) / 3.425  # row 0 of norm(A2 + I) = [1, .65, 0, 0, 1.775]
    relevance, _, targets = GradientRollout(hand_vit).token_relevance(X, None)
    np.testing.assert_allclose(relevance[0].numpy(), expected, rtol=1e-6)
    assert [t.category for t in targets] == [0]


def test_gradient_rollout_pairs_each_layer_with_its_own_gradient(hand_vit):
    # vit-explain's reversed pairing (block 1 with block 2's gradient) gives another answer: the
    # hand value above is the proof; here the class matters too (class 1 flips every gradient's sign).
    cam = GradientRollout(hand_vit)
    relevance, _, _ = cam.token_relevance(X, [ClassifierOutputTarget(1)])
    np.testing.assert_allclose(relevance[0].numpy(), np.eye(5)[0], atol=1e-7)  # relu kills all: R = I


@pytest.mark.parametrize("cls", [AttentionRollout, GradientRollout])
def test_bad_arguments(cls, hand_vit):
    with pytest.raises(ValueError, match=r"discard_ratio must be a number in \[0, 1\); got 1.0"):
        cls(hand_vit, discard_ratio=1.0)
    with pytest.raises(ValueError, match="does not take a reshape_transform"):
        cls(hand_vit, reshape_transform=lambda t: t)
    with pytest.raises(ValueError, match="prefix_tokens must be a non-negative int"):
        cls(hand_vit, prefix_tokens=-1)
    with pytest.raises(ValueError, match="eigen_smooth is not defined"):
        cls(hand_vit)(X, eigen_smooth=True)


def test_head_fusion_checked(hand_vit):
    with pytest.raises(ValueError, match=r"head_fusion must be one of \('mean', 'max', 'min'\); got 'sum'"):
        AttentionRollout(hand_vit, head_fusion="sum")
