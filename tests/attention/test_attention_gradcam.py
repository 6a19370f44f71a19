"""AttentionGradCAM (Chefer et al.) on the hand-set ViT of conftest."""

from __future__ import annotations

import numpy as np
import torch

from pytorch_grad_cam.attention.attention_gradcam import AttentionGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


def test_attention_gradcam_by_hand(hand_vit):
    # Gradients as in test_attention_rollout. Abar1 = mean_h relu(G1 * P1) with P1 = U (head 0), I (head 1):
    # rows 0, 1, 4 = [.3, .05, .1, .15, .2], [.025, .15, .05, .075, .1], [.025, .025, .05, .075, .6];
    # Abar2 row 0 = [0, .65, 0, 0, 1.775]. R1 = I + Abar1; R2[0] = R1[0] + .65 R1[1] + 1.775 R1[4]
    # = [1.3, .05, .1, .15, .2] + [.01625, .7475, .0325, .04875, .065]
    #   + [.044375, .044375, .08875, .133125, 2.84].
    relevance, prefix, _ = AttentionGradCAM(hand_vit).token_relevance(X, None)
    assert prefix == 1
    expected = torch.tensor([[1.360625, 0.841875, 0.22125, 0.331875, 3.105]])
    torch.testing.assert_close(relevance, expected)
    cam = AttentionGradCAM(hand_vit)(X)
    patches = np.array([0.841875, 0.22125, 0.331875, 3.105])
    np.testing.assert_allclose(cam[0].ravel(), (patches - patches.min()) / np.ptp(patches), atol=1e-6)


def test_other_class(hand_vit):
    # class 1 = -t_cls: every gradient is negated, relu(grad * A) = 0, R = I: no patch is relevant
    relevance, _, _ = AttentionGradCAM(hand_vit).token_relevance(X, [ClassifierOutputTarget(1)])
    np.testing.assert_allclose(relevance[0].numpy(), np.eye(5)[0], atol=1e-7)
