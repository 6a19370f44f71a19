"""metrics.audit: intervals by hand, the baseline marks, and one batch audited as its images one by one."""

from __future__ import annotations

import math

import pytest
import torch

from pytorch_grad_cam.metrics.audit import audit_batch, format_leaderboard, leaderboard, mean_interval
from pytorch_grad_cam.metrics.explainers import baseline_explainer, cam_explainer


def test_mean_interval_hand_computed():
    mean, low, high, n = mean_interval([1.0, 2.0, 3.0, float("nan")])
    # the NaN is left out; sample sd 1, half-width 1.96 / sqrt(3)
    assert (mean, n) == (2.0, 3)
    assert high - mean == pytest.approx(1.96 / math.sqrt(3)) and mean - low == pytest.approx(
        1.96 / math.sqrt(3)
    )
    assert math.isnan(mean_interval([])[0])


def test_leaderboard_marks_methods_that_do_not_beat_the_best_baseline():
    per_image = {
        "good": {"pointing_game": [1.0, 1.0], "randomisation_spearman": [0.1, 0.2]},
        "bad": {"pointing_game": [0.5, 0.5], "randomisation_spearman": [1.0, 1.0]},
        "random": {"pointing_game": [0.2, 0.2], "randomisation_spearman": [1.0, 1.0]},
        "centre": {"pointing_game": [0.6, 0.6], "randomisation_spearman": [1.0, 1.0]},
    }
    table = leaderboard(per_image)
    assert table["good"]["pointing_game"].beats_baselines is True
    assert table["bad"]["pointing_game"].beats_baselines is False  # below the centre blob
    assert table["good"]["randomisation_spearman"].beats_baselines is True  # lower is better
    assert table["bad"]["randomisation_spearman"].beats_baselines is False  # a tie does not beat
    assert table["centre"]["pointing_game"].beats_baselines is None
    text = format_leaderboard(table)
    assert "| bad | 0.500 ± 0.000* | 1.000 ± 0.000* |" in text
    assert "| centre (baseline) | 0.600 ± 0.000 |" in text


def test_audit_batch_is_batch_invariant_and_scores_baselines(small_cnn, images):
    x = images(3, size=16)
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[:, 4:10, 2:8] = True
    explainers = {
        "gradcam": cam_explainer(small_cnn, "gradcam", small_cnn.block1),
        "edges": baseline_explainer("edges"),
    }
    batch = audit_batch(small_cnn, x, explainers, masks=(masks, masks), num_classes=5)
    assert batch.layers == ["fc", "block2.1", "block2.0", "block1.1", "block1.0"]
    assert batch.scores["edges"]["randomisation_spearman"].tolist() == [1.0, 1.0, 1.0]
    for i in range(3):
        one = audit_batch(
            small_cnn, x[i : i + 1], explainers, masks=(masks[i : i + 1], masks[i : i + 1]), keys=[i]
        )
        assert one.classes == batch.classes[i : i + 1]
        for name, scores in one.scores.items():
            for metric, values in scores.items():
                assert values[0].item() == pytest.approx(batch.scores[name][metric][i].item(), abs=1e-5), (
                    metric
                )


def test_audit_batch_rejects_an_unknown_check(small_cnn, images):
    with pytest.raises(ValueError, match="sanity must name"):
        audit_batch(small_cnn, images(1), {}, sanity=["blur"])
