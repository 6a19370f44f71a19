"""The attention methods' math, by hand, without models or hooks."""

from __future__ import annotations

import pytest
import torch

from pytorch_grad_cam.attention import functional as AF


def test_fuse_heads():
    attention = torch.tensor([[[[0.2, 0.8]], [[0.6, 0.4]]]])  # (1, 2 heads, 1, 2)
    torch.testing.assert_close(AF.fuse_heads(attention, "mean"), torch.tensor([[[0.4, 0.6]]]))
    torch.testing.assert_close(AF.fuse_heads(attention, "max"), torch.tensor([[[0.6, 0.8]]]))
    torch.testing.assert_close(AF.fuse_heads(attention, "min"), torch.tensor([[[0.2, 0.4]]]))
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        AF.fuse_heads(attention, "sum")


def test_rollout_renormalises_rows_by_their_own_sum():
    # A + I = [[1, 1], [0, 1]]: rows divided by their sums 2 and 1. vit-explain's a / a.sum(-1)
    # divides columns instead and would give [[0.5, 1], [0, 1]].
    a = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    torch.testing.assert_close(AF.rollout([a]), torch.tensor([[[0.5, 0.5], [0.0, 1.0]]]))


def test_rollout_two_layers_later_on_the_left():
    # layer 1: token 0 takes all from token 1 -> M1 = [[.5, .5], [0, 1]];
    # layer 2: token 1 takes all from token 0 -> M2 = [[1, 0], [.5, .5]]; R = M2 @ M1.
    a1 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    a2 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    expected = torch.tensor([[[0.5, 0.5], [0.25, 0.75]]])
    torch.testing.assert_close(AF.rollout([a1, a2]), expected)


def test_discard_lowest_per_image_and_keeps_the_class_self_attention():
    fused = torch.tensor(
        [
            [[0.01, 0.5], [0.3, 0.2]],  # lowest two besides (0, 0): 0.2, 0.3
            [[0.9, 0.05], [0.02, 0.6]],  # lowest two besides (0, 0): 0.02, 0.05
        ]
    )
    kept = AF.discard_lowest(fused, 0.5, keep_first=True)
    torch.testing.assert_close(kept, torch.tensor([[[0.01, 0.5], [0.0, 0.0]], [[0.9, 0.0], [0.0, 0.6]]]))
    plain = AF.discard_lowest(fused, 0.5, keep_first=False)
    torch.testing.assert_close(plain, torch.tensor([[[0.0, 0.5], [0.3, 0.0]], [[0.9, 0.0], [0.0, 0.6]]]))
    torch.testing.assert_close(AF.discard_lowest(fused, 0.0, keep_first=True), fused)


def test_embed_attention_cait_layout():
    patch_only = torch.tensor([[[0.25, 0.75], [1.0, 0.0]]])  # 2 patch tokens, no class token yet
    embedded = AF.embed_attention(patch_only, 3)
    torch.testing.assert_close(
        embedded, torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.25, 0.75], [0.0, 1.0, 0.0]]])
    )
    class_attention = torch.tensor([[[0.5, 0.2, 0.3]]])  # the class token over all 3 tokens
    embedded = AF.embed_attention(class_attention, 3)
    torch.testing.assert_close(embedded, torch.tensor([[[0.5, 0.2, 0.3], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))


def test_gradient_matrices():
    attention = torch.tensor([[[[0.5, 0.5]], [[1.0, 0.0]]]])  # (1, 2, 1, 2)
    gradient = torch.tensor([[[[2.0, -4.0]], [[-1.0, 3.0]]]])
    # vit-explain: mean over heads first, then relu: mean([1, -2], [-1, 0]) = [0, -1] -> [0, 0]
    torch.testing.assert_close(
        AF.gradient_weighted_attention(attention, gradient), torch.tensor([[[0.0, 0.0]]])
    )
    # Chefer: relu first: mean([1, 0], [0, 0]) = [0.5, 0]
    torch.testing.assert_close(
        AF.positive_gradient_attention(attention, gradient), torch.tensor([[[0.5, 0.0]]])
    )
    # LeGrad ignores the attention: mean over heads and queries of relu(grad) = [1, 1.5]
    torch.testing.assert_close(AF.legrad_block_relevance(gradient), torch.tensor([[1.0, 1.5]]))


def test_chefer_relevance():
    # R1 = I + A1; R2 = R1 + A2 @ R1
    a1 = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    a2 = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
    # R1 = [[1, 1], [0, 1]]; A2 @ R1 = [[0, 0], [2, 2]]; R2 = [[1, 1], [2, 3]]
    torch.testing.assert_close(AF.chefer_relevance([a1, a2]), torch.tensor([[[1.0, 1.0], [2.0, 3.0]]]))


def test_source_row():
    relevance = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])
    torch.testing.assert_close(AF.source_row(relevance, 1), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(AF.source_row(relevance, 0), torch.tensor([[2.0, 4.0]]))


@pytest.mark.parametrize("prefix", [0, 1])
def test_row_folds_latest_layer_first_equal_the_full_products(prefix):
    # only the explained row of the product is needed; built from the last layer down it equals
    # the row of the whole (B, N, N) product, for the rollout and for Chefer et al.'s relevance
    g = torch.Generator().manual_seed(5)
    matrices = [torch.rand(2, 4, 4, generator=g) for _ in range(3)]
    chefer = AF.first_row(2, 4, prefix)
    rolled = AF.first_row(2, 4, prefix)
    for matrix in reversed(matrices):
        chefer = AF.chefer_row_step(chefer, matrix)
        rolled = AF.rollout_row_step(rolled, matrix)
    torch.testing.assert_close(chefer, AF.source_row(AF.chefer_relevance(matrices), prefix))
    torch.testing.assert_close(rolled, AF.source_row(AF.rollout(matrices), prefix))
    # the order matters on these matrices: forward order gives another row
    forward = AF.first_row(2, 4, prefix)
    for matrix in matrices:
        forward = AF.chefer_row_step(forward, matrix)
    assert not torch.allclose(forward, chefer, atol=1e-3)
