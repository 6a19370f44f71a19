"""pytorch_grad_cam._core.segmentation: the classes a segmenter's argmax mask holds, with their shares."""

from __future__ import annotations

import torch

from pytorch_grad_cam._core.segmentation import class_areas


def test_class_areas_are_the_shares_of_the_argmax_mask_largest_first():
    labels = torch.tensor([[[2, 2, 2, 2], [2, 2, 0, 0], [2, 0, 0, 3], [1, 1, 1, 1]]])  # 16 positions
    scores = torch.nn.functional.one_hot(labels, 5).permute(0, 3, 1, 2).float()  # class 4: nowhere
    assert class_areas(scores) == [[(2, 7 / 16), (0, 4 / 16), (1, 4 / 16), (3, 1 / 16)]]  # ties: lower first
    assert class_areas(scores, 0.25) == [[(2, 7 / 16), (0, 4 / 16), (1, 4 / 16)]]  # at least a quarter
    assert class_areas(scores, 0.5) == [[]]
    two = torch.cat([scores, scores.flip(1)])  # image 2: class k scores as class 4 - k
    assert class_areas(two, 0.3)[1] == [(2, 7 / 16)]
