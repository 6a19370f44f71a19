"""The perturbation-metric base: thresholds, MoRF/LeRF masks, averaging, shared batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_grad_cam.metrics.perturbation_confidence import (
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
    keep_below_threshold,
    otsu_threshold,
    percentile_threshold,
    perturbation_scores,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget


class RecordingImputer:
    """Returns the image with the removed pixels set to -1, and remembers the keep mask."""

    def __init__(self) -> None:
        self.masks: list[torch.Tensor] = []

    def __call__(self, image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        self.masks.append(keep.clone())
        return torch.where(keep.bool(), image, torch.full_like(image, -1.0))


def test_percentile_threshold_is_numpys_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(
        torch.rand(1, 1, 7, 7, generator=generator), size=(64, 64), mode="bilinear"
    )
    for values in (torch.rand(7, 9, generator=generator), smooth[0, 0], 1 - smooth[0, 0]):
        for p in (0, 10, 20, 37.5, 60, 80, 99.5, 100):
            expected = np.percentile(values.numpy(), p)
            assert percentile_threshold(values, p).item() == expected
            np.testing.assert_array_equal(keep_below_threshold(values, p).numpy(), values.numpy() < expected)
    # float32 rank arithmetic (torch.quantile) lands one ulp above 60 and would keep the 60 too
    values = torch.arange(101.0)
    assert percentile_threshold(values, 60).item() == 60.0
    assert int(keep_below_threshold(values, 60).sum()) == 60
    # 0 .. 99: the 80th percentile is 79.2, so the 80 values 0 .. 79 are kept
    ramp = torch.arange(100.0).view(10, 10)
    assert int(keep_below_threshold(ramp, 80).sum()) == 80


def test_otsu_threshold_matches_skimage():
    filters = pytest.importorskip("skimage.filters")
    generator = torch.Generator().manual_seed(0)
    values = torch.cat(
        [torch.randn(300, generator=generator) * 0.1 + 0.2, torch.randn(200, generator=generator) * 0.1 + 0.8]
    )
    expected = filters.threshold_otsu(values.double().numpy(), nbins=256)
    assert float(otsu_threshold(values.double())) == pytest.approx(expected, abs=1e-12)
    assert float(otsu_threshold(torch.full((3, 3), 0.25))) == 0.25
    # 'auto' removes the upper class
    keep = keep_below_threshold(values, "auto")
    assert bool((values[~keep] > 0.45).all()) and bool((values[keep] < 0.55).all())


def test_most_and_least_relevant_first_masks():
    cam = torch.arange(16.0).view(4, 4) / 15
    image = torch.ones(2, 4, 4)
    imputer = RecordingImputer()
    out = RemoveMostRelevantFirst(75, imputer)(image, cam)
    # the 75th percentile of 0..15 is 11.25: pixels 12..15 (the last row) are removed
    expected_keep = torch.ones(4, 4)
    expected_keep[3] = 0
    torch.testing.assert_close(imputer.masks[-1], expected_keep)
    torch.testing.assert_close(out[:, 3], torch.full((2, 4), -1.0))
    RemoveLeastRelevantFirst(75, imputer)(image, cam)
    # on 1 - cam the same percentile removes the 4 lowest pixels of cam: the first row
    expected_keep = torch.ones(4, 4)
    expected_keep[0] = 0
    torch.testing.assert_close(imputer.masks[-1], expected_keep)


def test_perturbation_scores_shares_batches(small_cnn, images):
    x = images(3, size=8)
    cams = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    targets = [ClassifierOutputSoftmaxTarget(k) for k in (0, 3, 4)]
    perturbations = [lambda img, cam: img * cam, lambda img, cam: img * (1 - cam), lambda img, cam: img + cam]
    scores, _ = perturbation_scores(x, cams, targets, small_cnn, perturbations, batch_size=4)
    assert scores.shape == (3, 3)
    for row, perturbation in enumerate(perturbations):
        alone = PerturbationConfidenceMetric(perturbation)(x, cams, targets, small_cnn)
        np.testing.assert_allclose(scores[row].numpy(), alone, atol=1e-6)
    raw, kept = perturbation_scores(x, cams, targets, small_cnn, perturbations, return_diff=False, keep=True)
    assert len(kept) == 9
    torch.testing.assert_close(kept[4], x[1] * (1 - cams[1]))  # perturbation-major, image-minor
    with torch.no_grad():
        expected = torch.softmax(small_cnn(x + cams[:, None]), -1)[range(3), [0, 3, 4]]
    np.testing.assert_allclose(raw[2].numpy(), expected.numpy(), atol=1e-6)


class NotAPerturbationMetric:
    """Wraps a metric so that the averager cannot batch it (the per-percentile fallback)."""

    def __init__(self, metric):
        self.metric = metric

    def __call__(self, *args):
        return self.metric(*args)


def test_averager_batched_equals_per_threshold_mean(small_cnn, images):
    x = images(2, size=8)
    cams = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3))

    def factory(p):
        return PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, RecordingImputer()))

    percentiles = [20, 50, 90]
    batched = AveragerAcrossThresholds(factory, percentiles, batch_size=5)(x, cams, [0, 1], small_cnn)
    fallback = AveragerAcrossThresholds(lambda p: NotAPerturbationMetric(factory(p)), percentiles)
    expected = np.mean([factory(p)(x, cams, [0, 1], small_cnn) for p in percentiles], axis=0)
    np.testing.assert_allclose(batched, expected, atol=1e-6)
    np.testing.assert_allclose(fallback(x, cams, [0, 1], small_cnn), expected, atol=1e-6)
    assert batched.dtype == np.float32


def test_perturbation_of_the_wrong_shape(small_cnn, images):
    metric = PerturbationConfidenceMetric(lambda img, cam: img[:, :4])
    with pytest.raises(ValueError, match=r"returned \(3, 4, 8\) for image 0.*\(3, 8, 8\)"):
        metric(images(1, size=8), torch.zeros(1, 8, 8), [0], small_cnn)
    with pytest.raises(TypeError, match="perturbation must be callable"):
        PerturbationConfidenceMetric("multiply")


@pytest.mark.parametrize(
    ("percentile", "error"),
    [
        (101, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        ("median", TypeError),
        (True, TypeError),
    ],
)
def test_bad_percentile(percentile, error):
    with pytest.raises(error, match="percentile"):
        RemoveMostRelevantFirst(percentile, RecordingImputer())
    with pytest.raises(error, match=r"percentiles\[1\]"):
        AveragerAcrossThresholds(lambda p: None, [10, percentile])


def test_bad_percentiles():
    with pytest.raises(ValueError, match="percentiles is empty"):
        AveragerAcrossThresholds(lambda p: None, [])
    with pytest.raises(TypeError, match="percentiles must be a list"):
        AveragerAcrossThresholds(lambda p: None, 50)
