"""Image helpers: colormap, overlay, preprocessing, scaling."""

import cv2
import numpy as np
import pytest
import torch

from pytorch_grad_cam.utils.image import (
    COLORMAP_JET,
    apply_colormap,
    create_labels_legend,
    deprocess_image,
    jet_colormap,
    preprocess_image,
    scale_accross_batch_and_channels,
    scale_cam_image,
    show_cam_on_image,
    show_factorization_on_image,
)


def test_jet_is_opencvs():
    lut = jet_colormap()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (0, 0, 128) and tuple(lut[255]) == (128, 0, 0)  # dark blue, dark red
    # OpenCV's table itself (BGR, one row per level), not the jet formula: they differ by 1 in
    # about a hundred entries, and users compare with 1.5.x, which used OpenCV's
    opencv = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    np.testing.assert_array_equal(lut, opencv)
    assert COLORMAP_JET == cv2.COLORMAP_JET


def opencv_overlay(img, mask, colormap, use_rgb, image_weight=0.5):
    """1.5.x's show_cam_on_image, written out with OpenCV."""
    heatmap = cv2.applyColorMap(np.uint8(255 * mask), colormap)
    if use_rgb:
        heatmap = cv2.cvtColor(heatmap, cv2.COLOR_BGR2RGB)
    cam = (1 - image_weight) * np.float32(heatmap) / 255 + image_weight * img
    return np.uint8(255 * cam / np.max(cam))


@pytest.mark.parametrize(
    "colormap",
    [cv2.COLORMAP_JET, cv2.COLORMAP_VIRIDIS, cv2.COLORMAP_HOT, cv2.COLORMAP_TURBO, cv2.COLORMAP_BONE],
)
@pytest.mark.parametrize("use_rgb", [False, True])
def test_show_cam_on_image_equals_opencv(colormap, use_rgb):
    rng = np.random.default_rng(colormap)
    img = rng.random((5, 7, 3), dtype=np.float32)
    mask = rng.random((5, 7), dtype=np.float32)
    mask[0, :3] = [0.0, 1.0, 0.5]
    got = show_cam_on_image(img, mask, use_rgb=use_rgb, colormap=colormap, image_weight=0.3)
    np.testing.assert_array_equal(got, opencv_overlay(img, mask, colormap, use_rgb, image_weight=0.3))


def test_every_opencv_colormap_is_accepted():
    codes = {getattr(cv2, name) for name in dir(cv2) if name.startswith("COLORMAP_")}
    mask = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    for code in codes:
        expected = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * mask), code), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(apply_colormap(mask, code), expected)
    with pytest.raises(ValueError, match="not an OpenCV colormap code"):
        apply_colormap(mask, 999)
    with pytest.raises(TypeError, match="cv2.COLORMAP_"):
        apply_colormap(mask, "jet")


def test_show_cam_on_image_blend():
    img = np.full((2, 2, 3), 0.5, dtype=np.float32)
    mask = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    rgb = show_cam_on_image(img, mask, use_rgb=True)
    bgr = show_cam_on_image(img, mask)
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])
    # blend = 0.5 * heatmap + 0.5 * img, then / max. Pixel (0,1) is dark red (128/255, 0, 0).
    blend_red = 0.5 * 128 / 255 + 0.25
    blend_blue_at_0 = 0.5 * 128 / 255 + 0.25
    peak = max(blend_red, blend_blue_at_0)
    assert rgb[0, 1, 0] == np.uint8(255 * blend_red / peak)
    assert rgb[0, 1, 1] == np.uint8(255 * 0.25 / peak)
    assert show_cam_on_image(img, mask, colormap=COLORMAP_JET, image_weight=1.0)[0, 0, 0] == 255


def test_show_cam_on_image_errors():
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        show_cam_on_image(np.full((2, 2, 3), 255.0), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="mask shape"):
        show_cam_on_image(np.zeros((2, 2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="image_weight"):
        show_cam_on_image(np.zeros((2, 2, 3)), np.zeros((2, 2)), image_weight=2)


def test_preprocess_image():
    img = np.zeros((4, 5, 3), dtype=np.float32)
    img[..., 0] = 0.485
    t = preprocess_image(img)
    assert t.shape == (1, 3, 4, 5) and t.dtype == torch.float32
    np.testing.assert_allclose(t[0, 0].numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(t[0, 1].numpy(), -0.456 / 0.224, rtol=1e-6)
    np.testing.assert_allclose(preprocess_image(img, mean=(0, 0, 0), std=(1, 1, 1))[0, 0].numpy(), 0.485)


def test_deprocess_image():
    img = np.array([[-1.0, 1.0]], dtype=np.float32)
    # mean 0, std 1: x / (1 + 1e-5) * 0.1 + 0.5, then * 255 truncated to uint8
    step = 0.1 / (1 + 1e-5)
    np.testing.assert_array_equal(deprocess_image(img), [[int(255 * (0.5 - step)), int(255 * (0.5 + step))]])


def test_scale_cam_image_takes_opencv_size_order():
    cam = np.array([[[1.0, 3.0]]], dtype=np.float32)  # (B=1, h=1, w=2)
    out = scale_cam_image(cam, target_size=(4, 1))  # (W, H) as OpenCV orders it
    assert out.shape == (1, 1, 4)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_scale_accross_batch_and_channels():
    maps = np.array([[[[1.0, 3.0]], [[5.0, 5.0]]], [[[0.0, -2.0]], [[2.0, 0.0]]]], dtype=np.float32)
    out = scale_accross_batch_and_channels(maps, (4, 1))  # (B=2, C=2, h=1, w=2) to W=4, H=1
    assert out.shape == (2, 2, 1, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1, 0], [0.0, 0.0, 0.0, 0.0], atol=1e-6)  # a constant map
    np.testing.assert_allclose(out[1, 0, 0], [1.0, 0.75, 0.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[1, 1, 0], [1.0, 0.75, 0.25, 0.0], atol=1e-6)


def test_create_labels_legend_by_hand():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    labels = {0: "cat, tabby", 1: "dog", 2: "a,b,c,d"}  # only the first three comma parts are kept
    assert create_labels_legend(scores, labels, top_k=2) == [
        "dog:0.70\na,b,c:0.20",
        "cat, tabby:0.50\na,b,c:0.30",
    ]
    assert create_labels_legend(scores, ["x", "y", "z"], top_k=1) == ["y:0.70", "x:0.50"]


def test_show_factorization_on_image_by_hand():
    img = np.zeros((1, 2, 3), dtype=np.float32)
    maps = np.array([[[1.0, 0.2]], [[0.5, 0.8]]], dtype=np.float32)  # concept 0 wins left, 1 right
    colors = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0, 1.0]]  # the second at half brightness, with alpha
    out = show_factorization_on_image(img, maps, colors=colors, image_weight=0.5)
    # each pixel: its winner's colour at full value times the winner's strength, half blended
    np.testing.assert_array_equal(out, [[[127, 0, 0], [0, 102, 0]]])
    image = np.full((8, 8, 3), 0.5, dtype=np.float32)
    big = np.stack([np.eye(8), 1 - np.eye(8)]).astype(np.float32)
    legend = show_factorization_on_image(image, big, concept_labels=["one", "two\nlines"])
    assert legend.shape == (8, 16, 3) and legend.dtype == np.uint8
    np.testing.assert_array_equal(legend[:, :8], show_factorization_on_image(image, big))
    with pytest.raises(ValueError, match="concept_labels has 1 labels for 2 concepts"):
        show_factorization_on_image(image, big, concept_labels=["one"])
    with pytest.raises(ValueError, match="explanations"):
        show_factorization_on_image(image, big[:, :4])
