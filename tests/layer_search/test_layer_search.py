"""The automatic target layer: the rule on hand-built models where the right layer is known."""

from __future__ import annotations

import gc

import pytest
import torch
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam import layer_search
from pytorch_grad_cam.layer_search import cache as layer_cache
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.utils.find_layers import find_target_layer as public_find_target_layer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


class Plain(nn.Module):
    """conv-relu-conv(stride 2)-relu in ``features``, then pool -> linear: the answer is ``features.3``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.fc(self.pool(self.features(x)).flatten(1))


class DeadBranch(nn.Module):
    """The last spatial layer (``side``) runs after the main path but never reaches the score."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Conv2d(3, 4, 3, padding=1)
        self.side = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.main(x)
        self.side(features)  # computed, unused: its gradient is zero
        return self.fc(features.mean(dim=(2, 3)))


class AfterPooling(nn.Module):
    """conv -> global pooling -> a 1x1 convolution as classifier: the 1x1 map is not a grid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.conv(x))).flatten(1)


class Reused(nn.Module):
    """``stem`` then one ``shared`` block applied twice: the shared block is skipped."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.shared(self.shared(self.stem(x))).mean(dim=(2, 3)))


class Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class Ambiguous(nn.Module):
    """Its last map ``(B, 8, 8, 8)`` (from a 32x32 input) reads as NCHW and as NHWC alike, and comes
    from a functional op (not from a module whose layout is known)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.scale = Scale()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.scale(torch.relu(self.conv(x))).mean(dim=(2, 3)))


class Tied(Ambiguous):
    """As :class:`Ambiguous` but the conv's own output reaches ``scale``: channels-first, as the conv's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.scale(self.conv(x)).mean(dim=(2, 3)))


class InPlaceAfter(nn.Module):
    """conv -> bn -> ReLU(inplace) inside ``block``: the ReLU (not the BN) is the block's map."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(x).mean(dim=(2, 3)))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def x_of(size=(8, 8), batch=1):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("model_class", "expected"),
    [
        (Plain, "features.3"),
        (DeadBranch, "main"),
        (AfterPooling, "conv"),
        (Reused, "stem"),
        (InPlaceAfter, "block.2"),
        (Tied, "scale"),
    ],
)
def test_the_rule_on_models_with_a_known_answer(model_class, expected):
    model = model_class().eval()
    choice = find_target_layer(model, x_of((32, 32) if model_class is Tied else (8, 8)))
    assert choice.name == expected
    assert choice.layer is model.get_submodule(expected)
    assert choice.reshape_transform is None
    assert expected in choice.reason
    assert public_find_target_layer is find_target_layer


def test_depth_grid_and_counts_of_the_choice():
    model = Plain().eval()
    choice = find_target_layer(model, x_of((8, 12)))
    # forward order: features.0..3, features, pool, fc, the model itself
    assert (choice.depth, choice.modules_run) == (4, 8)
    assert choice.grid == (4, 6)
    assert choice.output_shape == (1, 6, 4, 6)


def test_the_choice_does_not_depend_on_the_batch_composition():
    model = Plain().eval()
    single = find_target_layer(model, x_of(batch=1))
    layer_search.clear_cache()
    assert find_target_layer(model, x_of(batch=3)).name == single.name


def test_the_targets_decide_the_gradient_rule():
    """A layer that reaches only class 1: for class 0 the earlier layer is chosen."""

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            a = self.a(x)
            b = self.b(a)
            return torch.stack([a.mean(dim=(1, 2, 3)), b.mean(dim=(1, 2, 3))], dim=1)

    model = TwoHeads().eval()
    assert find_target_layer(model, x_of(), [ClassifierOutputTarget(0)]).name == "a"
    layer_search.clear_cache()
    assert find_target_layer(model, x_of(), [ClassifierOutputTarget(1)]).name == "b"


def test_errors_name_what_was_tried():
    with pytest.raises(ValueError, match=r"no module of the model outputs a spatial map aligned.*MLP"):
        find_target_layer(Mlp().eval(), x_of())
    with pytest.raises(ValueError, match=r"rejected input_tensor of shape \(1, 3, 8, 8\)"):
        find_target_layer(nn.Sequential(nn.Conv2d(5, 4, 3)), x_of())
    with pytest.raises(ValueError, match=r"cannot settle the layout of scale.*\(1, 8, 8, 8\)"):
        find_target_layer(Ambiguous().eval(), x_of((32, 32)))
    with pytest.raises(ValueError, match=r"runs more than once"):
        shared = nn.Conv2d(3, 3, 3, padding=1)
        find_target_layer(nn.Sequential(shared, shared, nn.Flatten()), x_of())
    with pytest.raises(ValueError, match=r"none of the .* gets a gradient"):
        find_target_layer(
            nn.Sequential(
                nn.Conv2d(3, 3, 3), nn.Flatten(), nn.Linear(108, 2, bias=True).requires_grad_()
            ).apply(_zero_linear),
            x_of(),
        )
    with pytest.raises(TypeError, match="model must be"):
        find_target_layer(lambda x: x, x_of())


def _zero_linear(module):
    if isinstance(module, nn.Linear):
        nn.init.zeros_(module.weight)


def test_the_model_is_left_exactly_as_it_was(used_model, images):
    before = model_snapshot(used_model)
    choice = find_target_layer(used_model, images(2))
    assert choice.name == "block2.2"
    assert_same_model(before, model_snapshot(used_model))
    assert used_model.training


def test_two_one_image_forwards_and_a_cache_per_model_and_input_shape():
    # a no_grad recorded forward, then one whose graph starts at the last candidates
    model = Plain().eval()
    first = find_target_layer(model, x_of())
    assert model.forwards == 2
    again = find_target_layer(model, x_of(batch=2))
    assert model.forwards == 2 and again == first
    find_target_layer(model, x_of((16, 16), batch=3))
    assert model.forwards == 4  # one image decides, whatever the batch


def test_the_cache_notices_a_changed_model_and_keeps_no_model_alive():
    model = Plain().eval()
    find_target_layer(model, x_of())
    model.features[3] = nn.AdaptiveAvgPool2d(1)  # the old choice's place now pools to 1x1
    assert find_target_layer(model, x_of()).name == "features.2"
    assert model.forwards == 4
    del model
    gc.collect()
    assert len(layer_cache._CACHE) == 0


def test_a_vit_gets_the_first_norm_of_its_last_block(tiny_vit):
    x = torch.randn(1, 3, 16, 16)
    choice = find_target_layer(tiny_vit, x)
    assert choice.name == "blocks.1.norm1"
    assert (choice.layout.kind, choice.layout.prefix, choice.grid) == ("tokens", 1, (4, 4))
    assert "num_prefix_tokens" in choice.prefix_source


class SharedActivationHead(nn.Module):
    """efficientnet's head: blocks, then conv_head -> bn1 -> ``act`` where ``act`` is also the stem's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)))
        self.conv_head = nn.Conv2d(4, 8, 1)
        self.bn1 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.blocks(self.act(self.stem(x)))
        return self.fc(self.act(self.bn1(self.conv_head(x))).mean(dim=(2, 3)))


def test_a_layer_before_a_shared_activation_gives_way_to_the_block_feeding_it():
    model = SharedActivationHead().eval()
    assert find_target_layer(model, x_of()).name == "blocks.0.1"  # the block's own output


class InPlaceResidual(nn.Module):
    """``block`` returns its ``branch`` child's output after ``+= x`` in place: not the branch's map."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branch = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            out = self.branch(x)
            out += x
            return out

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = self.Block()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean(dim=(2, 3)))


def test_a_block_whose_child_output_changed_in_place_is_its_own_map():
    assert find_target_layer(InPlaceResidual().eval(), x_of()).name == "block"
