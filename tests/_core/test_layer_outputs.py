"""layer_outputs: the error for a layer output that is no map names the exact transform to pass."""

from __future__ import annotations

import functools
import re

import pytest
import torch

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.errors import NotApplicableError
from pytorch_grad_cam.layer_search.layouts import tokens_to_map
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform


class TokenNet(torch.nn.Module):
    """Patches of 8x8 as tokens after a class token, a token-wise layer, a head on the mean token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.mix = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(torch.nn.functional.gelu(self.mix(tokens)).mean(dim=1))


def test_token_output_error_names_the_transform_that_works() -> None:
    model = TokenNet().eval()
    x = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(1))  # 4x8 patches, 1 class token
    layer = model.mix
    targets = [ClassifierOutputTarget(3), ClassifierOutputTarget(1)]
    with pytest.raises(NotApplicableError) as raised:
        GradCAM(model, target_layers=[layer])(x, targets)
    message = str(raised.value)
    assert "1 prefix + 4x8 patches" in message
    assert re.search(r"functools\.partial\(tokens_to_map, input_size=\(32, 64\)\)", message)
    advised = functools.partial(tokens_to_map, input_size=(32, 64))
    by_hand = functools.partial(vit_reshape_transform, height=4, width=8)
    maps = GradCAM(model, [layer], reshape_transform=advised)(x, targets)
    expected = GradCAM(model, [layer], reshape_transform=by_hand)(x, targets)
    assert expected.std() > 0.01  # a real map, so equality below means something
    torch.testing.assert_close(torch.as_tensor(maps), torch.as_tensor(expected), rtol=0, atol=1e-6)


def test_output_that_is_no_token_grid_gets_the_general_advice() -> None:
    model = TokenNet().eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(NotApplicableError, match="for token outputs .ViT, Swin. pass reshape_transform"):
        GradCAM(model, target_layers=[model.head])(x, [ClassifierOutputTarget(0)])
