"""metrics.localisation: hand-computed scores, batch invariance, and quantus 0.6 where it agrees."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_grad_cam.metrics.localisation import (
    boxes_to_mask,
    energy_pointing_game,
    pointing_game,
    relevance_mass,
    relevance_rank,
    thresholded_iou,
)


def test_boxes_to_mask_takes_pixels_whose_centre_is_inside():
    mask = boxes_to_mask([[1, 0, 3, 2], [0.4, 3.6, 0.6, 4]], (4, 5))
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[0:2, 1:3] = True
    # the second box: x in [0.4, 0.6) holds no centre (0.5 is, but y in [3.6, 4) misses 3.5)
    assert torch.equal(mask, expected)


def _peak_map(size: int, row: int, col: int) -> torch.Tensor:
    cam = torch.zeros(1, size, size)
    cam[0, row, col] = 1.0
    return cam


def test_pointing_game_tolerance_in_pixels():
    mask = boxes_to_mask([[0, 0, 10, 10]], (40, 40))[None]  # columns and rows 0..9
    # the peak at (9, 24): 15 pixels right of column 9, on a row of the box -> a hit at 15, not at 14
    cam = _peak_map(40, 9, 24)
    assert pointing_game(cam, mask).item() == 1.0
    assert pointing_game(cam, mask, tolerance=14).item() == 0.0
    # diagonal (19, 19): distance sqrt(200) = 14.14 from (9, 9) -> a hit at 15, a miss at 14
    cam = _peak_map(40, 19, 19)
    assert pointing_game(cam, mask).item() == 1.0
    assert pointing_game(cam, mask, tolerance=14).item() == 0.0
    assert pointing_game(cam, mask, tolerance=0).item() == 0.0
    assert pointing_game(_peak_map(40, 3, 3), mask, tolerance=0).item() == 1.0


def test_pointing_game_ties_and_empty_masks():
    cam = torch.zeros(2, 6, 6)
    cam[:, 0, 0] = cam[:, 5, 5] = 1.0  # two maxima; only one on the object
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, 5, 5] = True
    scores = pointing_game(cam, masks, tolerance=0)
    assert scores[0].item() == 0.5 and math.isnan(scores[1].item())  # one of the two maxima


def test_relevance_mass_and_energy_hand_computed():
    cam = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    mask = torch.tensor([[[True, False], [False, True]]])
    assert relevance_mass(cam, mask).item() == pytest.approx(5 / 10)
    assert energy_pointing_game(cam, mask).item() == pytest.approx(5 / 10)


def test_relevance_rank_hand_computed_and_ties():
    cam = torch.tensor([[[0.9, 0.8, 0.1], [0.7, 0.0, 0.0]]])
    mask = torch.tensor([[[True, False, False], [True, True, False]]])  # K = 3
    # top 3: 0.9 (in), 0.8 (out), 0.7 (in) -> 2/3
    assert relevance_rank(cam, mask).item() == pytest.approx(2 / 3)
    # ties: values (1, 0, 0, 0), K = 2: one pixel above (in), one place among three tied zeros,
    # one of which is on the object -> (1 + 1/3) / 2
    cam = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[[True, False, True, False]]])
    assert relevance_rank(cam, mask).item() == pytest.approx((1 + 1 / 3) / 2)


def test_thresholded_iou_hand_computed():
    cam = torch.tensor([[[1.0, 0.6, 0.4], [0.5, 0.2, 0.0]]])
    mask = torch.tensor([[[True, True, True], [False, False, False]]])
    # >= 0.5: (0,0), (0,1), (1,0); with the mask: 2 shared of 4 in the union
    assert thresholded_iou(cam, mask).item() == pytest.approx(2 / 4)
    assert thresholded_iou(cam, mask, threshold=0.35).item() == pytest.approx(3 / 4)


def test_batch_invariance():
    generator = torch.Generator().manual_seed(0)
    cams = torch.rand(4, 20, 20, generator=generator)
    masks = torch.rand(4, 20, 20, generator=generator) > 0.7
    for metric in (pointing_game, relevance_mass, relevance_rank, thresholded_iou):
        batch = metric(cams, masks)
        for i in range(4):
            assert metric(cams[i : i + 1], masks[i : i + 1]).item() == batch[i].item()


def _quantus_inputs(seed: int):
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(5, 1, 12, 12, generator=generator)  # continuous: no ties
    masks = torch.zeros(5, 1, 12, 12)
    for i, (y, x, h, w) in enumerate([(0, 0, 4, 4), (2, 3, 6, 5), (5, 5, 7, 7), (1, 8, 3, 4), (4, 0, 8, 2)]):
        masks[i, 0, y : y + h, x : x + w] = 1
    x_batch = torch.zeros(5, 1, 12, 12).numpy()
    return cams, masks, x_batch


@pytest.mark.parametrize(
    "name, ours",
    [
        ("PointingGame", lambda c, m: pointing_game(c, m, tolerance=0)),
        ("RelevanceMassAccuracy", relevance_mass),
        ("RelevanceRankAccuracy", relevance_rank),
    ],
)
def test_equal_to_quantus(name, ours):
    import quantus  # in the test extra (setup.py)

    cams, masks, x_batch = _quantus_inputs(3)
    metric = getattr(quantus, name)(disable_warnings=True, display_progressbar=False)
    expected = metric(
        model=None,
        x_batch=x_batch,
        y_batch=np.zeros(5, dtype=int),
        a_batch=cams.double().numpy(),
        s_batch=masks.numpy(),
    )
    result = ours(cams[:, 0], masks[:, 0].bool())
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-9)


def test_differences_from_quantus():
    """The 15 pixel tolerance (quantus counts a maximum on the object only) and ties (quantus counts
    a pointing hit when any tied maximum is on the object, and ranks tied pixels in np.argsort's
    order; here both count by the expected share of a random choice among the ties)."""
    import quantus

    cam = _peak_map(20, 10, 10)
    mask = boxes_to_mask([[0, 0, 5, 5]], (20, 20))[None]
    assert pointing_game(cam, mask).item() == 1.0 and pointing_game(cam, mask, tolerance=0).item() == 0.0
    flat = torch.zeros(1, 20, 20)
    flat[0, :, :4] = 1.0  # 80 tied maxima, 20 of them on the object
    assert pointing_game(flat, mask, tolerance=0).item() == pytest.approx(20 / 80)
    expected = quantus.PointingGame(disable_warnings=True)(
        model=None,
        x_batch=np.zeros((1, 1, 20, 20)),
        y_batch=np.zeros(1, dtype=int),
        a_batch=flat[:, None].double().numpy(),
        s_batch=mask[:, None].double().numpy(),
    )
    assert expected == [1.0]
    cam = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[[True, False, False, True]]])  # K = 2: 1 above, one of three zeros
    assert relevance_rank(cam, mask).item() == pytest.approx((1 + 1 / 3) / 2)


@pytest.mark.parametrize("metric", [pointing_game, relevance_mass, relevance_rank, thresholded_iou])
def test_bad_input(metric):
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.rand(1, 4, 4), torch.ones(1, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="tensors"):
        metric(np.zeros((1, 4, 4)), torch.ones(1, 4, 4, dtype=torch.bool))


def test_pointing_game_equals_the_brute_force_distance_to_every_mask_pixel():
    generator = torch.Generator().manual_seed(5)
    maps = (torch.rand(6, 30, 30, generator=generator) * 4).floor()  # many tied maxima
    masks = torch.zeros(6, 30, 30, dtype=torch.bool)
    for i in range(6):
        blob = torch.rand(30, 30, generator=generator) > 0.97 + 0.005 * i  # scattered pixels
        masks[i] = blob
    masks[5, 10:20, 3:9] = True  # and a solid block
    for tolerance in (0, 1, 2.5, 6):
        expected = []
        for cam, mask in zip(maps, masks):
            peaks = torch.nonzero(cam == cam.max()).double()
            distance = torch.cdist(peaks, torch.nonzero(mask).double()).min(dim=1).values
            expected.append((distance <= tolerance).double().mean())
        torch.testing.assert_close(pointing_game(maps, masks, tolerance=tolerance), torch.stack(expected))
