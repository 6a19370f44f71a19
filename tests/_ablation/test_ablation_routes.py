"""ablation_routes: each route's scores against the definition, and the checks that choose a route,
driven through :class:`LayerRoutes` directly (no AblationCAM, no BaseCAM capture)."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import layer_output
from torch import nn

from pytorch_grad_cam._ablation import passes as AP
from pytorch_grad_cam._ablation import routes as R
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class PooledNet(nn.Module):
    """conv-relu (``features``) -> average pool -> linear: the pooled route's case."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class PoolAndCorner(PooledNet):
    """The layer's output also reaches the head unpooled: no pooled route, the cached one."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        return self.head(torch.cat([self.pool(a).flatten(1), a[:, :, 0, 0]], 1))


class SkipNet(PooledNet):
    """A skip connection from the input around ``features``: the network before it must run (batch 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x) + x[:, :1]).flatten(1))


class ReshapesByInput(PooledNet):
    """Reshapes by the input's batch size after ``features``: only one input row per copy works."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).reshape(x.shape[0], -1))


class CropsByInput(PooledNet):
    """Also crops ``features``' output by the input's size: only the image itself works."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = self.features(x)[:, :, : x.shape[-2] // 2, : x.shape[-1] // 2]
        return self.head(kept.reshape(x.shape[0], -1))


def image(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def routes_for(model: nn.Module, batch_size: int = 2, ablation_layer: AblationLayer | None = None):
    settings = R.AblationSettings(model, ablation_layer or AblationLayer(), None, batch_size)
    return R.LayerRoutes(settings, model.features, 0, 4)


def captured(model: nn.Module, x: torch.Tensor, category: int, score_offset: float = 0.0) -> R.ImageRun:
    """The image as BaseCAM's capture leaves it: the layer's output and the score ``y`` known."""
    with torch.no_grad():
        y = model(x)[0, category]
    run = R.ImageRun(x, ClassifierOutputTarget(category))
    run.output = layer_output(model, model.features, x)
    run.score = y + score_offset
    return run


def definition(model: nn.Module, x: torch.Tensor, category: int, plan: list[int]) -> torch.Tensor:
    """The whole network on the image, channel k of ``features``' output set to 0 (it is a ReLU's)."""
    scores = []
    for k in plan:

        def hook(module, inputs, output, k=k):
            output = output.clone()
            if k >= 0:
                output[:, k] = 0.0
            return output

        handle = model.features.register_forward_hook(hook)
        try:
            with torch.no_grad():
                scores.append(model(x)[0, category])
        finally:
            handle.remove()
    return torch.stack(scores)


PLAN = [-1, 0, 1, 2, 3]


@pytest.mark.parametrize(
    "model_cls, route",
    [
        (PooledNet, "pooled"),
        (PoolAndCorner, "cached"),
        (SkipNet, "prefix"),
        (ReshapesByInput, "small"),
        (CropsByInput, "full"),
    ],
)
def test_each_route_equals_the_definition(model_cls, route):
    model = model_cls().eval()
    x = image()
    routes = routes_for(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = routes.image_scores(captured(model, x, 1), torch.tensor(PLAN))
    assert routes.route == route
    assert routes.used_fallback is (route == "full")
    assert [w.category for w in caught] == ([UserWarning] if route == "full" else [])
    torch.testing.assert_close(got, definition(model, x, 1, PLAN), rtol=0, atol=1e-6)


def test_the_fallback_warns_once_naming_the_layer_and_the_reason():
    model = CropsByInput().eval()
    routes = routes_for(model)
    with pytest.warns(UserWarning) as caught:
        routes.image_scores(captured(model, image(), 0), torch.tensor(PLAN))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "target_layers[0] (Sequential) does not run on a batch of ablated copies" in message
    assert "correct, slower" in message


def test_the_pooled_route_packs_copies_and_the_steps_add_up():
    model = PooledNet().eval()
    routes = routes_for(model, batch_size=2)
    x = image()
    steps = []
    first = routes.image_scores(captured(model, x, 2), torch.tensor(PLAN), steps.append)
    # the first pass (2 copies of the 8x8 output) decides; the pool makes 64 values into 1
    assert routes.route == "pooled" and routes.pack == 64
    assert steps == [2, 3]
    torch.testing.assert_close(first, definition(model, x, 2, PLAN), rtol=0, atol=1e-6)
    # a second image on the same routes: one pass of up to 2 * 64 copies
    steps.clear()
    other = image(1)
    second = routes.image_scores(captured(model, other, 2), torch.tensor(PLAN), steps.append)
    assert steps == [5]
    torch.testing.assert_close(second, definition(model, other, 2, PLAN), rtol=0, atol=1e-6)


def test_a_wrong_unablated_score_moves_on_to_the_next_route():
    # the check copy must score the known y: with y off by 1, the empty-batch passes are refused
    # and the image runs up to the layer (whose passes score the image itself)
    model = PooledNet().eval()
    routes = routes_for(model)
    x = image()
    got = routes.image_scores(captured(model, x, 1, score_offset=1.0), torch.tensor(PLAN))
    assert routes.route == "prefix"
    torch.testing.assert_close(got, definition(model, x, 1, PLAN), rtol=0, atol=1e-6)


def test_without_a_capture_the_first_pass_runs_the_image():
    model = PooledNet().eval()
    routes = routes_for(model)
    x = image()
    first = R.ImageRun(x, ClassifierOutputTarget(0))  # no output, no score
    got = routes.image_scores(first, torch.tensor(PLAN))
    torch.testing.assert_close(first.output, layer_output(model, model.features, x), rtol=0, atol=0)
    torch.testing.assert_close(first.score, definition(model, x, 0, [-1])[0])
    torch.testing.assert_close(got, definition(model, x, 0, PLAN), rtol=0, atol=1e-6)


def test_checked_scores_decides_and_raises_what_another_route_would_not_fix():
    model = PooledNet().eval()
    routes = routes_for(model)
    x = image()
    run = captured(model, x, 1)
    batch = torch.tensor([-1, 0])
    good = model(x).detach().expand(2, 3)
    torch.testing.assert_close(routes.checked_scores(run, batch, lambda: good), good[:, 1])
    assert routes.checked_scores(run, batch, lambda: good + 1.0) is None  # y not reproduced
    assert routes.checked_scores(run, batch, lambda: good[:1]) is None  # not a batch of 2

    def raising(error):
        def forward():
            raise error

        return forward

    assert routes.checked_scores(run, batch, raising(RuntimeError("shape mismatch"))) is None
    with pytest.raises(torch.cuda.OutOfMemoryError):
        routes.checked_scores(run, batch, raising(torch.cuda.OutOfMemoryError("out of memory")))
    routes.hook_error = ValueError("the ablation layer failed")
    with pytest.raises(ValueError, match="the ablation layer failed"):
        routes.checked_scores(run, batch, raising(routes.hook_error))


def test_out_of_memory_in_the_first_pass_is_raised_not_a_route_change(monkeypatch):
    model = PooledNet().eval()
    routes = routes_for(model)

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(AP, "forward_with_copies", no_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        routes.image_scores(captured(model, image(), 1), torch.tensor(PLAN))
    assert routes.mode == R.CACHED and not routes.used_fallback


class Halve(AblationLayer):
    """Not the default ablation: the pooled route's identity does not hold for it."""

    def forward(self, output, channels, layout):
        copies = output.expand(int(channels.shape[0]), *output.shape[1:]).clone()
        for i, k in enumerate(channels.tolist()):
            if k >= 0:
                copies[i, k] *= 0.5
        return copies


def test_try_pooled_route_refusals():
    model = PooledNet().eval()
    x = image()
    batch = torch.tensor([-1, 0, 1])
    for routes, watch in (
        (routes_for(model, ablation_layer=Halve()), [model.pool]),  # not the default ablation
        (routes_for(model), [model.pool, nn.AdaptiveMaxPool2d(1)]),  # two pools took the copies
        (routes_for(model), []),  # no pool took them
    ):
        run = captured(model, x, 1)
        expected = routes.checked_scores(
            run, batch, lambda routes=routes, run=run: routes._ablated_forward(x[:0], batch, run)
        )
        routes.try_pooled_route(run, batch, expected, watch)
        assert routes.pool is None and routes.pack == 1 and routes.route == "cached"
    # the same model and pass with the default ablation and the one pool: taken
    routes = routes_for(model)
    run = captured(model, x, 1)
    expected = routes.checked_scores(run, batch, lambda: routes._ablated_forward(x[:0], batch, run))
    routes.try_pooled_route(run, batch, expected, [model.pool])
    assert routes.pool is model.pool and routes.pack == 64 and routes.route == "pooled"
    # ... unless its scores disagree with the pass it repeats
    routes = routes_for(model)
    run = captured(model, x, 1)
    routes._ablated_forward(x[:0], batch, run)  # finds the layout
    routes.try_pooled_route(run, batch, expected + 1e-3, [model.pool])
    assert routes.pool is None and routes.route == "cached"


def test_the_small_route_tries_larger_inputs_and_keeps_the_one_that_works():
    class NeedsFourPixels(ReshapesByInput):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[-1] < 4:
                raise RuntimeError("input too small")
            return super().forward(x)

    model = NeedsFourPixels().eval()
    routes = routes_for(model)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    got = routes.image_scores(captured(model, x, 0), torch.tensor(PLAN))
    # 8 // 16 and 8 // 8 are 1 pixel, 8 // 4 = 2: too small; 8 // 2 = 4 works
    assert routes.route == "small" and routes.divisors == (2,)
    torch.testing.assert_close(got, definition(model, x, 0, PLAN), rtol=0, atol=1e-6)
