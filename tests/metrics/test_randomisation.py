"""metrics.randomisation and metrics.random_logit: the model is left as it was, the randomised layers
are the ones asked for, a model-blind map keeps similarity 1, and quantus 0.6 gives the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam.metrics.explainers import baseline_explainer, cam_explainer
from pytorch_grad_cam.metrics.random_logit import other_classes, random_logit
from pytorch_grad_cam.metrics.randomisation import (
    model_parameter_randomisation,
    parameter_layers,
    randomise_layer,
)

LAYERS = ["fc", "block2.1", "block2.0", "block1.1", "block1.0"]


def test_parameter_layers_top_first(small_cnn):
    assert parameter_layers(small_cnn) == LAYERS


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_user_model_left_exactly_as_it_was(used_model, images, order):
    before = model_snapshot(used_model)
    rng = torch.get_rng_state()
    explain = cam_explainer(used_model, "gradcam", used_model.block2)
    model_parameter_randomisation(used_model, images(2), explain, order=order, seed=3)
    assert_same_model(before, model_snapshot(used_model))
    assert torch.equal(rng, torch.get_rng_state())


def _recording_explainer(seen):
    def explain(model, x, classes):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return torch.rand(x.shape[0], 8, 8, generator=torch.Generator().manual_seed(0))

    return explain


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_the_randomised_layers_are_the_ones_asked_for(small_cnn, images, order):
    with torch.no_grad():  # "trained" norm layers: a reset changes every one of their tensors
        for norm in (small_cnn.block1[1], small_cnn.block2[1]):
            for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
                tensor.uniform_(0.5, 1.5)
    seen = []
    model_parameter_randomisation(
        small_cnn, images(1), _recording_explainer(seen), order=order, classes=[0], seed=3
    )
    trained = small_cnn.state_dict()
    assert len(seen) == 1 + len(LAYERS)
    for step, state in enumerate(seen[1:]):
        random = LAYERS[: step + 1] if order == "cascading" else [LAYERS[step]]
        for key, value in state.items():
            layer = key.rsplit(".", 1)[0]
            if key.endswith("num_batches_tracked"):
                continue
            changed = not torch.equal(value, trained[key])
            assert changed == (layer in random), (step, key)


def test_randomise_layer_is_reset_parameters_under_the_seed(small_cnn):
    expected = torch.nn.Linear(16, 5)
    torch.manual_seed(7)
    expected.reset_parameters()
    randomise_layer(small_cnn.fc, 7)
    assert torch.equal(small_cnn.fc.weight, expected.weight) and torch.equal(small_cnn.fc.bias, expected.bias)


def test_edge_map_keeps_similarity_one_and_gradcam_does_not(small_cnn, images):
    x = images(2, size=16)
    edges = model_parameter_randomisation(small_cnn, x, baseline_explainer("edges"), classes=[0, 1])
    assert torch.equal(edges.spearman, torch.ones(5, 2, dtype=torch.float64))
    assert torch.allclose(edges.ssim, torch.ones(5, 2, dtype=torch.float64), atol=1e-12)
    gradcam = model_parameter_randomisation(
        small_cnn, x, cam_explainer(small_cnn, "gradcam", small_cnn.block1), classes=[0, 1]
    )
    assert (gradcam.final()["spearman"] < 0.9).all()


def test_batch_invariance(small_cnn, images):
    x = images(3, size=16)
    explain = cam_explainer(small_cnn, "gradcam", small_cnn.block1)
    batch = model_parameter_randomisation(small_cnn, x, explain, classes=[0, 1, 2])
    one = model_parameter_randomisation(small_cnn, x[1:2], explain, classes=[1])
    torch.testing.assert_close(one.spearman[:, 0], batch.spearman[:, 1], rtol=0, atol=1e-6)
    torch.testing.assert_close(one.ssim[:, 0], batch.ssim[:, 1], rtol=0, atol=1e-6)


def _quantus_explain(layer_name):
    def explain_func(model, inputs, targets, **kwargs):
        explain = cam_explainer(model, "gradcam", dict(model.named_modules())[layer_name])
        x = torch.as_tensor(inputs)
        return explain(model, x, [int(t) for t in np.asarray(targets).reshape(-1)]).numpy()[:, None]

    return explain_func


@pytest.mark.parametrize("order, quantus_order", [("cascading", "top_down"), ("independent", "independent")])
def test_mprt_equals_quantus(small_cnn, images, order, quantus_order):
    import quantus  # in the test extra (setup.py)

    x = images(3, size=16)
    ours = model_parameter_randomisation(
        small_cnn, x, cam_explainer(small_cnn, "gradcam", small_cnn.block1), order=order, seed=5
    )
    metric = quantus.MPRT(
        similarity_func=quantus.similarity_func.correlation_spearman,
        layer_order=quantus_order,
        seed=4,  # quantus seeds every layer with seed + 1
        abs=False,
        normalise=False,
        disable_warnings=True,
    )
    scores = metric(
        model=small_cnn,
        x_batch=x.numpy(),
        y_batch=np.asarray(ours.classes),
        explain_func=_quantus_explain("block1"),
        softmax=False,
        device="cpu",
    )
    layers = [name for name in scores if name != "original"]
    # cascading: the same order; independent: quantus goes bottom up (the order changes nothing)
    assert layers == (ours.layers if order == "cascading" else ours.layers[::-1])
    expected = torch.tensor([scores[name] for name in ours.layers], dtype=torch.float64)
    torch.testing.assert_close(ours.spearman, expected.nan_to_num(0.0), rtol=0, atol=1e-6)


def test_random_logit_hand_checked_other_class(small_cnn, images):
    assert other_classes([0, 1], 2) == [1, 0]  # two classes: the other one
    draws = other_classes([3] * 200, 5, seed=1)
    assert 3 not in draws and set(draws) == {0, 1, 2, 4}
    assert other_classes([3, 3], 5, seed=1, keys=[7, 150]) == [draws[7], draws[150]]  # by key, not place
    x = images(2, size=16)
    edges = random_logit(small_cnn, x, baseline_explainer("edges"), num_classes=5)
    assert torch.allclose(edges.ssim, torch.ones(2, dtype=torch.float64), atol=1e-12)
    gradcam = random_logit(small_cnn, x, cam_explainer(small_cnn, "gradcam", small_cnn.block1), num_classes=5)
    assert (gradcam.spearman < 0.99).all()


def test_random_logit_equals_quantus_and_how_its_ssim_differs(small_cnn, images):
    """quantus flattens the maps before its similarity: Spearman agrees; its SSIM is the 1-D SSIM
    of the flattened rows (7 consecutive pixels of the row-major order), not the 2-D one here."""
    import quantus
    from skimage.metrics import structural_similarity

    x = images(3, size=16)
    explain = cam_explainer(small_cnn, "gradcam", small_cnn.block1)
    ours = random_logit(small_cnn, x, explain, num_classes=2)
    kwargs = dict(
        model=small_cnn,
        x_batch=x.numpy(),
        y_batch=np.asarray(ours.classes),
        explain_func=_quantus_explain("block1"),
        softmax=False,
        device="cpu",
    )
    spearman = quantus.RandomLogit(
        num_classes=2,
        similarity_func=quantus.similarity_func.correlation_spearman,
        abs=False,
        normalise=False,
        disable_warnings=True,
    )(**kwargs)
    torch.testing.assert_close(ours.spearman, torch.tensor(spearman, dtype=torch.float64), rtol=0, atol=1e-6)
    flat_ssim = quantus.RandomLogit(num_classes=2, abs=False, normalise=False, disable_warnings=True)(
        **kwargs
    )
    first = explain(small_cnn, x, ours.classes).double().flatten(1).numpy()
    second = explain(small_cnn, x, ours.others).double().flatten(1).numpy()
    for i in range(3):
        span = max(first[i].max(), second[i].max()) - min(first[i].min(), second[i].min())
        assert flat_ssim[i] == pytest.approx(
            structural_similarity(first[i], second[i], data_range=span), abs=1e-6
        )
        assert abs(flat_ssim[i] - ours.ssim[i].item()) > 1e-3


def test_bad_input(small_cnn, images):
    explain = baseline_explainer("edges")
    with pytest.raises(ValueError, match="order"):
        model_parameter_randomisation(small_cnn, images(1), explain, order="bottom_up")
    with pytest.raises(ValueError, match="layers must be module names"):
        model_parameter_randomisation(small_cnn, images(1), explain, layers=["nope"])
    with pytest.raises(ValueError, match="one class per image"):
        model_parameter_randomisation(small_cnn, images(2), explain, classes=[1])
    with pytest.raises(ValueError, match="num_classes"):
        random_logit(small_cnn, images(1), explain, num_classes=1)
    with pytest.raises(ValueError, match="modules of model"):
        cam_explainer(small_cnn, "gradcam", torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="'random', 'centre' or 'edges'"):
        baseline_explainer("blur")


def test_steps_randomise_groups_of_layers(small_cnn, images):
    """Five layers in two steps: bounds round(0), round(2.5) = 2, 5: fc and block2.1, then the rest."""
    seen = []
    result = model_parameter_randomisation(
        small_cnn, images(1), _recording_explainer(seen), classes=[0], seed=3, steps=2
    )
    assert result.layers == ["block2.1", "block1.0"] and result.spearman.shape == (2, 1)
    trained = small_cnn.state_dict()
    assert not torch.equal(seen[1]["fc.weight"], trained["fc.weight"])
    assert torch.equal(seen[1]["block2.0.weight"], trained["block2.0.weight"])
    assert not torch.equal(seen[2]["block1.0.weight"], trained["block1.0.weight"])
    with pytest.raises(ValueError, match="steps"):
        model_parameter_randomisation(small_cnn, images(1), _recording_explainer([]), steps=0)


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_one_copy_for_several_explainers_equals_separate_calls(small_cnn, images, order):
    from pytorch_grad_cam.metrics.randomisation import randomisation_tests

    x = images(2, size=16)
    explainers = {
        "gradcam": cam_explainer(small_cnn, "gradcam", small_cnn.block1),
        "layercam": cam_explainer(small_cnn, "layercam", small_cnn.block2),
        "edges": baseline_explainer("edges"),
    }
    together = randomisation_tests(small_cnn, x, explainers, classes=[1, 2], order=order, steps=3)
    for name, explain in explainers.items():
        alone = model_parameter_randomisation(small_cnn, x, explain, classes=[1, 2], order=order, steps=3)
        assert together[name].layers == alone.layers
        assert torch.equal(together[name].spearman, alone.spearman), name
        assert torch.equal(together[name].ssim, alone.ssim), name
