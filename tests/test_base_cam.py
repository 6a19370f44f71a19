"""BaseCAM orchestration: both API generations, targets, smoothing, layers, grad modes, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam import EigenCAM, EigenGradCAM, GradCAM, GradCAMPlusPlus, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

# -- both API generations -------------------------------------------------------------------------


def test_seed_api_equals_15x_api(small_cnn, images):
    x = images(2)
    layer = small_cnn.block2
    seed = GradCAM(model=small_cnn, target_layer=layer, use_cuda=False)
    new = GradCAM(model=small_cnn, target_layers=[layer])
    np.testing.assert_array_equal(
        seed(input_tensor=x, target_category=[1, 3]),
        new(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(3)]),
    )
    # int: the same class for every image; positional second argument as in the seed
    np.testing.assert_array_equal(seed(x, 2), new(x, [ClassifierOutputTarget(2)] * 2))
    # None: the top class
    top = small_cnn(x).argmax(1).tolist()
    np.testing.assert_array_equal(seed(input_tensor=x, target_category=None), new(x, targets=top))
    np.testing.assert_array_equal(GradCAM(small_cnn, [layer])(x), new(x, top))


def test_positional_forms(small_cnn, images):
    x = images(1)
    layer = small_cnn.block2
    expected = GradCAM(small_cnn, [layer])(x, [0])
    np.testing.assert_array_equal(GradCAM(small_cnn, layer, False)(x, [0]), expected)  # seed: use_cuda
    np.testing.assert_array_equal(GradCAM(small_cnn, layer)(x, [0]), expected)  # a single module
    identity = lambda t: t  # noqa: E731
    cam = GradCAM(small_cnn, [layer], identity)  # 1.5.x: reshape_transform third
    assert cam.reshape_transform is identity
    np.testing.assert_array_equal(cam(x, [0]), expected)
    np.testing.assert_array_equal(GradCAM(small_cnn, layer, False, identity)(x, [0]), expected)


def test_context_manager_and_outputs(small_cnn, images):
    x = images(2)
    with GradCAM(model=small_cnn, target_layers=[small_cnn.block2]) as cam:
        grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(4)] * 2)
    assert grayscale.dtype == np.float32 and grayscale.shape == (2, 32, 32)
    assert grayscale.min() >= 0 and grayscale.max() <= 1
    torch.testing.assert_close(cam.outputs, small_cnn(x))
    assert not cam.outputs.requires_grad


def test_batch_equals_images_one_by_one(small_cnn, images):
    x = images(3)
    for cls in (GradCAM, GradCAMPlusPlus, LayerCAM, EigenCAM):
        cam = cls(small_cnn, [small_cnn.block1, small_cnn.block2])
        batch = cam(x, [0, 1, 2], eigen_smooth=True)
        singles = np.concatenate([cam(x[i : i + 1], [i], eigen_smooth=True) for i in range(3)])
        np.testing.assert_allclose(batch, singles, atol=1e-5)


# -- smoothing and layers ---------------------------------------------------------------------------


def test_aug_smooth_is_the_mean_of_six_views(golden):
    model, x = golden
    cam = LayerCAM(model, [model.features])
    views = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            view = x * factor
            view = view.flip(-1) if flip else view
            out = cam(view, [0])
            views.append(out[..., ::-1] if flip else out)
    expected = np.mean(views, axis=0)
    np.testing.assert_allclose(cam(x, [0], aug_smooth=True), expected, atol=1e-6)
    # The flipped view differs here (the head is not flip-symmetric), so this is not trivial.
    assert np.abs(views[0] - views[3]).max() > 0.1


def test_aug_smooth_targets_come_from_the_plain_view(class_choice):
    # the plain view's top class is 1, the flipped views' is 0: a target chosen per view would
    # average class 0's maps into the flipped half
    model, x = class_choice
    cam = GradCAM(model, [model.features])
    assert model(x).argmax().item() == 1 and model(x.flip(-1)).argmax().item() == 0
    plain_class = cam(x, [1], aug_smooth=True)
    assert np.abs(plain_class - cam(x, [0], aug_smooth=True)).max() > 0.3
    np.testing.assert_allclose(cam(x, aug_smooth=True), plain_class, atol=1e-7)
    torch.testing.assert_close(cam.outputs, model(x))


def test_several_layers_are_the_scaled_mean(small_cnn, images):
    # Two layers at the input's resolution, so that no resize stands between the per-layer maps
    # and the single-layer results (a resize moves a map's min and max off 0 and 1).
    x = images(2)
    first, second = small_cnn.block1[0], small_cnn.block1
    a = GradCAM(small_cnn, [first])(x, [0, 1])
    b = GradCAM(small_cnn, [second])(x, [0, 1])
    both = GradCAM(small_cnn, [first, second])(x, [0, 1])
    assert np.abs(a - b).max() > 0.1
    mean = (a + b) / 2
    flat = mean.reshape(2, -1)
    expected = ((flat - flat.min(1, keepdims=True)) / (np.ptp(flat, 1, keepdims=True) + 1e-7)).reshape(
        mean.shape
    )
    # A single-layer result is scaled twice (per layer, then after the mean), so its maximum is
    # R / (R + 1e-7) rescaled, R the raw map's range; for these small random-weight maps R ~ 1e-2,
    # which moves values by ~1e-5 against the once-scaled per-layer maps the mean is taken of.
    np.testing.assert_allclose(both, expected, atol=1e-4)


def test_3d_input(small_cnn3d):
    x = torch.randn(2, 3, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    for cls in (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, EigenCAM, EigenGradCAM):
        cam = cls(small_cnn3d, [small_cnn3d.block2])(x, [0, 1])
        assert cam.shape == (2, 6, 8, 8)
        assert cam.min() >= 0 and cam.max() > 0.99


def test_inplace_relu_after_target_does_not_change_activations(images):
    # The conv's raw output has negative values; ReLU(inplace=True) right after it must not be
    # seen by the CAM: it explains the conv output as it was produced.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(
        conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()
    x = images(1, size=8)
    with torch.no_grad():
        a = conv(x)
    cam = EigenCAM(model, [conv])(x)
    assert (a < 0).any()
    expected = _minmax(np.maximum(_pca(a.numpy()), 0))
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(expected)[:, None], size=(8, 8), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(cam, _minmax(expected), atol=1e-5)


def _pca(a: np.ndarray) -> np.ndarray:
    x = a[0].reshape(a.shape[1], -1).T.astype(np.float64)
    x = x - x.mean(0)
    _, _, vh = np.linalg.svd(x)
    proj = x @ vh[0]
    proj = proj * np.sign(proj[np.argmax(np.abs(proj))])
    return proj.reshape(1, *a.shape[2:]).astype(np.float32)


def _minmax(cam: np.ndarray) -> np.ndarray:
    flat = cam.reshape(cam.shape[0], -1)
    flat = flat - flat.min(1, keepdims=True)
    return (flat / (flat.max(1, keepdims=True) + 1e-7)).reshape(cam.shape)


# -- grad modes, frozen models, dtypes ----------------------------------------------------------------


def test_works_under_no_grad_inference_mode_and_frozen(small_cnn, images):
    x = images(2)
    expected = GradCAM(small_cnn, [small_cnn.block2])(x, [0, 1])
    with torch.no_grad():
        np.testing.assert_array_equal(GradCAM(small_cnn, [small_cnn.block2])(x, [0, 1]), expected)
    with torch.inference_mode():
        x_inf = x.clone()
        np.testing.assert_array_equal(GradCAM(small_cnn, [small_cnn.block2])(x_inf, [0, 1]), expected)
    for p in small_cnn.parameters():
        p.requires_grad_(False)
    np.testing.assert_array_equal(GradCAM(small_cnn, [small_cnn.block2])(x, [0, 1]), expected)
    assert torch.is_grad_enabled()  # the call restored the caller's grad mode


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(small_cnn, images, dtype):
    x = images(2)
    expected = GradCAM(small_cnn, [small_cnn.block2])(x, [0, 1])
    model = small_cnn.to(dtype)
    cam = GradCAM(model, [model.block2])(x, [0, 1])  # float32 input is cast to the model's dtype
    assert cam.dtype == np.float32
    # bf16 keeps 8 bits of mantissa and fp16 11: the maps agree to their precision, not to 1e-6.
    np.testing.assert_allclose(cam, expected, atol=0.06)
    assert np.corrcoef(cam.ravel(), expected.ravel())[0, 1] > 0.99


# -- targets on structured outputs ------------------------------------------------------------------


class DictOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return {"logits": self.inner(x), "aux": torch.zeros(())}


class TupleOutput(DictOutput):
    def forward(self, x):
        return (self.inner(x), torch.zeros(len(x), 3))


def test_dict_and_tuple_outputs(small_cnn, images):
    x = images(2)
    expected = GradCAM(small_cnn, [small_cnn.block2])(x, [1, 2])
    wrapped = DictOutput(small_cnn)
    targets = [lambda out, k=k: out["logits"][k] for k in (1, 2)]
    np.testing.assert_array_equal(GradCAM(wrapped, [small_cnn.block2])(x, targets), expected)
    top = GradCAM(small_cnn, [small_cnn.block2])(x)
    np.testing.assert_array_equal(GradCAM(wrapped, [small_cnn.block2])(x), top)  # logits used for top class
    wrapped = TupleOutput(small_cnn)
    targets = [lambda out, k=k: out[0][k] for k in (1, 2)]
    np.testing.assert_array_equal(GradCAM(wrapped, [small_cnn.block2])(x, targets), expected)


def test_softmax_target(small_cnn, images):
    x = images(1)
    cam = GradCAM(small_cnn, [small_cnn.block2])
    # d softmax_k / dA = p_k (d z_k/dA - sum_j p_j d z_j/dA): a different map from the logit's.
    soft = cam(x, [ClassifierOutputSoftmaxTarget(0)])
    assert np.abs(soft - cam(x, [0])).max() > 1e-3


# -- threads ---------------------------------------------------------------------------------------


class Gate(nn.Module):
    """Pauses the CAM's own forward until another thread has run a whole forward of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.cam_thread: int | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def forward(self, x):
        if threading.get_ident() == self.cam_thread:
            self.paused.set()
            assert self.resume.wait(10)
        return x


def test_other_threads_forwards_are_not_captured(small_cnn, images):
    gate = Gate()
    model = nn.Sequential(gate, small_cnn).eval()
    x, y = images(1, seed=1), images(3, seed=2)
    expected = GradCAM(model, [small_cnn.block2])(x, [0])
    results = {}

    def other():
        assert gate.paused.wait(10)
        with torch.no_grad():
            results["other"] = model(y)  # runs while the CAM's hooks are registered
        gate.resume.set()

    thread = threading.Thread(target=other)
    thread.start()
    gate.cam_thread = threading.get_ident()
    try:
        cam = GradCAM(model, [small_cnn.block2])(x, [0])
    finally:
        gate.cam_thread = None
        gate.resume.set()
        thread.join()
    np.testing.assert_array_equal(cam, expected)
    torch.testing.assert_close(results["other"], small_cnn(y))


# -- transformers through reshape_transform ------------------------------------------------------------


def test_vit_reshape_transform_equals_slow_definition():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=4
    ).eval()
    layer = vit.blocks[-1].norm1
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    def transform(t):
        return vit_reshape_transform(t, 4, 4)

    got = GradCAM(vit, [layer], reshape_transform=transform)(x, [1, 2])
    captured = {}
    handle = layer.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o))
    try:
        logits = vit(x)
    finally:
        handle.remove()
    a = captured["a"]
    (g,) = torch.autograd.grad(logits[0, 1] + logits[1, 2], a)
    vit.zero_grad(set_to_none=True)
    a, g = transform(a.detach()), transform(g)
    cam = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1)).numpy()
    expected = _minmax(
        torch.nn.functional.interpolate(
            torch.from_numpy(_minmax(cam))[:, None], size=(32, 32), mode="bilinear", align_corners=False
        )[:, 0].numpy()
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(p.grad is None for p in vit.parameters())


# -- the user's model is left exactly as it was -----------------------------------------------------


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus, LayerCAM, EigenCAM])
def test_model_untouched_after_success(used_model, images, cls):
    before = model_snapshot(used_model)
    cam = cls(used_model, [used_model.block2])(images(2), [0, 1], aug_smooth=True, eigen_smooth=True)
    assert np.isfinite(cam).all() and cam.max() > 0.5  # the mean of 6 views need not reach 1
    assert_same_model(before, model_snapshot(used_model))


def test_model_untouched_after_an_exception(used_model, images):
    before = model_snapshot(used_model)
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(used_model, [used_model.block1, used_model.block2])(images(2), [0, 99])
    assert_same_model(before, model_snapshot(used_model))

    def failing_target(output):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        GradCAM(used_model, [used_model.block2])(images(1), [failing_target])
    assert_same_model(before, model_snapshot(used_model))
    assert torch.is_grad_enabled()


def test_runs_in_eval_mode_and_restores(small_cnn, images):
    # In train mode BatchNorm would use batch statistics: the CAM must equal the eval-mode one.
    x = images(2)
    expected = GradCAM(small_cnn.eval(), [small_cnn.block2])(x, [0, 1])
    small_cnn.train()
    np.testing.assert_array_equal(GradCAM(small_cnn, [small_cnn.block2])(x, [0, 1]), expected)
    assert all(m.training for m in small_cnn.modules())


def test_no_parameter_gradients_are_computed(small_cnn, images):
    # Only the activations are differentiated: no parameter takes part in the backward.
    seen = []
    handles = [p.register_hook(lambda g, n=n: seen.append(n)) for n, p in small_cnn.named_parameters()]
    try:
        GradCAM(small_cnn, [small_cnn.block2])(images(1), [0])
    finally:
        for handle in handles:
            handle.remove()
    assert seen == []
    assert all(p.grad is None for p in small_cnn.parameters())


# -- bad input: clear errors naming the argument --------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        ([0], ValueError, "targets has 1 entries but the batch has 2"),
        ([0, 1, 2], ValueError, "targets has 3 entries but the batch has 2"),
        ([0, -1], ValueError, r"targets\[1\] = -1"),
        ([0, 5], ValueError, "category 5 is out of range .* 5 classes"),
        ([0, "cat"], TypeError, r"targets\[1\] must be an int class index or a callable"),
        ([0, True], TypeError, r"targets\[1\]"),
        ("cat", TypeError, "targets must be None, an int"),
    ],
)
def test_bad_targets(small_cnn, images, targets, error, match):
    with pytest.raises(error, match=match):
        GradCAM(small_cnn, [small_cnn.block2])(images(2), targets)


def test_seed_target_category_errors(small_cnn, images):
    cam = GradCAM(small_cnn, [small_cnn.block2])
    with pytest.raises(ValueError, match="targets has 3 entries but the batch has 2"):
        cam(input_tensor=images(2), target_category=[1, 2, 3])
    with pytest.raises(TypeError, match="either targets=... or target_category=..."):
        cam(images(2), targets=[1, 2], target_category=[1, 2])


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.zeros(3, 32, 32), ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(0, 3, 32, 32), ValueError, "empty"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int64), TypeError, "floating point"),
        (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN or inf"),
        (torch.full((1, 3, 32, 32), float("inf")), ValueError, "NaN or inf"),
        (np.zeros((1, 3, 32, 32), dtype=np.float32), TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(small_cnn, x, error, match):
    with pytest.raises(error, match=match):
        GradCAM(small_cnn, [small_cnn.block2])(x, [0] * max(len(x), 1))


def test_bad_constructor_arguments(small_cnn):
    with pytest.raises(ValueError, match="target_layers is empty"):
        GradCAM(small_cnn, [])
    with pytest.raises(TypeError, match=r"target_layers\[1\] must be an nn.Module"):
        GradCAM(small_cnn, [small_cnn.block2, "block1"])
    assert GradCAM(small_cnn).auto_target_layers  # omitted: chosen on the first call (test_layer_search.py)
    with pytest.raises(TypeError, match="not both"):
        GradCAM(small_cnn, [small_cnn.block2], target_layer=small_cnn.block1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        GradCAM(lambda x: x, [small_cnn.block2])
    with pytest.raises(TypeError, match="use_cuda must be True or False"):
        GradCAM(small_cnn, [small_cnn.block2], use_cuda="yes")
    with pytest.raises(TypeError, match="reshape_transform given twice"):
        GradCAM(small_cnn, [small_cnn.block2], lambda t: t, reshape_transform=lambda t: t)
    with pytest.raises(TypeError, match="aug_smooth must be True or False"):
        GradCAM(small_cnn, [small_cnn.block2])(torch.zeros(1, 3, 8, 8), [0], aug_smooth="yes")


def test_use_cuda_without_cuda(small_cnn, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA was asked for"):
        GradCAM(small_cnn, [small_cnn.block2], use_cuda=True)
    with pytest.raises(ValueError, match="CUDA was asked for"):
        GradCAM(small_cnn, [small_cnn.block2], device="cuda")
    assert next(small_cnn.parameters()).device.type == "cpu"


def test_layer_never_reached(small_cnn, images):
    stray = nn.Conv2d(3, 3, 1)
    before = model_snapshot(small_cnn)
    with pytest.raises(ValueError, match=r"target_layers\[1\] \(Conv2d\) never ran"):
        GradCAM(small_cnn, [small_cnn.block2, stray])(images(1), [0])
    assert_same_model(before, model_snapshot(small_cnn))
    assert len(stray._forward_hooks) == 0


class TupleLayer(nn.Module):
    def forward(self, x):
        return x, x * 2


class TupleLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.split = TupleLayer()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        a, b = self.split(x)
        return self.fc((a + b).mean((2, 3)))


def test_non_tensor_layer_output(images):
    model = TupleLayerNet().eval()
    with pytest.raises(ValueError, match=r"target_layers\[0\] gave a tuple .* reshape_transform"):
        GradCAM(model, [model.split])(images(1), [0])
    # With a reshape_transform that picks a tensor out of the tuple, it works, gradients included.
    cam = GradCAM(model, [model.split], reshape_transform=lambda out: out[1])(images(1), [0])
    assert cam.shape == (1, 32, 32) and np.isfinite(cam).all()


def test_token_output_without_reshape_transform():
    timm = pytest.importorskip("timm")
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=4
    ).eval()
    with pytest.raises(ValueError, match=r"shape \(1, 17, 16\) .* pass reshape_transform"):
        GradCAM(vit, [vit.blocks[-1].norm1])(torch.zeros(1, 3, 32, 32), [0])


def test_zero_gradients_give_zero_maps_not_nan(mixing_head_net):
    model = mixing_head_net([[0.0] * 8])
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [2.0, 0.0]]]])
    for cls in (GradCAM, GradCAMPlusPlus, LayerCAM):
        cam = cls(model, [model.features])(x, [0], eigen_smooth=True)
        np.testing.assert_array_equal(cam, np.zeros((1, 2, 2), dtype=np.float32))


def test_compute_is_the_call_as_a_tensor_and_call_is_its_numpy(small_cnn, images):
    x = images(2, size=16)
    cam = GradCAM(small_cnn, [small_cnn.block2])
    maps = cam.compute(x, [1, 3], aug_smooth=True)
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32 and not maps.requires_grad
    np.testing.assert_array_equal(maps.numpy(), cam(x, [1, 3], aug_smooth=True))
    np.testing.assert_array_equal(cam.compute(x, target_category=2).numpy(), cam(x, [2, 2]))


def test_the_per_call_hooks_run_once_per_call_also_after_an_error(small_cnn, images):
    calls = []

    class Hooked(GradCAM):
        def start_call(self, *, eigen_smooth):
            calls.append(("start", eigen_smooth))

        def end_call(self):
            calls.append("end")

    cam = Hooked(small_cnn, [small_cnn.block2])
    cam(images(1, size=8), [0], eigen_smooth=True)
    with pytest.raises(ValueError, match="category 9 is out of range"):
        cam(images(1, size=8), [9])
    assert calls == [("start", True), "end", ("start", False), "end"]
