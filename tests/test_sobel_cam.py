"""sobel_cam: the edge-magnitude baseline, by hand."""

import numpy as np
import pytest

from pytorch_grad_cam.sobel_cam import sobel_cam


def gray_image(rows):
    """An RGB uint8 image with R = G = B (its gray is the value itself)."""
    values = np.array(rows, dtype=np.uint8)
    return np.repeat(values[:, :, None], 3, axis=2)


def test_horizontal_ramp_by_hand():
    # identical rows: d/dy = 0. d/dx at column c is 4 * (I[c+1] - I[c-1]) (weights 1, 2, 1 over
    # the rows), with the border reflected without repeating the edge (I[-1] = I[1]).
    out = sobel_cam(gray_image([[0, 10, 20]] * 3))
    assert out.dtype == np.uint8 and out.shape == (3, 3)
    np.testing.assert_array_equal(out, [[0, 40, 0]] * 3)  # 0.5 * |80| at the centre column


def test_saturation_and_rounding():
    # centre column: |4 * (255 - 0)| = 1020 saturates to 255, and 0.5 * 255 = 127.5 rounds to 128
    out = sobel_cam(gray_image([[0, 0, 255]] * 3))
    np.testing.assert_array_equal(out, [[0, 128, 0]] * 3)
    # a vertical ramp: the same numbers transposed
    np.testing.assert_array_equal(
        sobel_cam(gray_image([[0] * 3, [10] * 3, [20] * 3])), [[0] * 3, [40] * 3, [0] * 3]
    )


def test_gray_weights_and_float_images():
    red = np.zeros((3, 3, 3), dtype=np.uint8)
    red[:, 2, 0] = 100  # gray = (100 * 4899 + 8192) >> 14 = 30 in the last column
    np.testing.assert_array_equal(sobel_cam(red), [[0, 60, 0]] * 3)  # 0.5 * 4 * 30
    as_float = red.astype(np.float32)  # float gray 29.9: |4 * 29.9| = 119.6 rounds to 120, half is 60
    np.testing.assert_array_equal(sobel_cam(as_float), [[0, 60, 0]] * 3)


@pytest.mark.parametrize(
    "bad, error", [(np.zeros((4, 4)), ValueError), (np.zeros((2, 2, 3), dtype=object), TypeError)]
)
def test_bad_images(bad, error):
    with pytest.raises(error, match="img must"):
        sobel_cam(bad)
