"""pytorch_grad_cam.utils.drawing: a class mask's outline and label (``cam.py --task segmentation``)."""

from __future__ import annotations

import numpy as np

from pytorch_grad_cam.utils.drawing import draw_mask, mask_outline


def test_the_outline_is_the_masks_edge_pixels():
    mask = np.zeros((6, 7), dtype=bool)
    mask[1:5, 2:7] = True  # 4 x 5, touching the right border
    want = mask.copy()
    want[2:4, 3:6] = False  # the inside: every 4-neighbour in the mask (the border counts as outside)
    np.testing.assert_array_equal(mask_outline(mask, width=1), want)
    assert mask_outline(mask, width=2).sum() == mask.sum()  # two pixels deep: nothing inside is left


def test_draw_mask_whitens_the_outline_at_the_pictures_size_and_labels_it():
    image = np.full((40, 40, 3), 60, dtype=np.uint8)
    mask = np.zeros((10, 10), dtype=bool)
    mask[5:10, 5:10] = True  # the bottom-right quarter, at a quarter of the picture's resolution
    picture = draw_mask(image, mask, "cat 25%")
    assert picture.shape == (40, 40, 3) and image.max() == 60  # a new picture
    assert (picture[39, 20:40] == 255).all() and (picture[20:40, 39] == 255).all()  # the edge
    assert (picture[25:37, 25:37] == 60).all() and (picture[:8, :8] == 60).all()  # inside, and outside
    label = picture[8:20, :]  # just above the mask's first pixel (row 20), moved left to fit the picture
    assert (label == 0).any() and (label > 200).any()  # white text (anti-aliased) on black
    np.testing.assert_array_equal(draw_mask(image, np.zeros((4, 4), dtype=bool), "none"), image)
