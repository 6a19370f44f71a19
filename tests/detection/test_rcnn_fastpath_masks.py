"""The R-CNN fast path keeps the slow path where boxes reach an output differentiably."""

from __future__ import annotations

import pytest
import torch
from test_rcnn_fastpath import _mask_rcnn
from torch import nn

import pytorch_grad_cam.detection.outputs as detection
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.rcnn_fastpath import fast_roi_heads

pytest.importorskip("torchvision.models.detection")


class BoxAwarePool(nn.Module):
    """torchvision's mask pooler, each row scaled by its box's mean side: the masks depend on the
    boxes differentiably (as a user's own pooler may), so the boxes' graph matters."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, features, boxes, shapes):
        scale = torch.cat([b[:, 2:] - b[:, :2] for b in boxes]).mean(dim=1) / 50.0
        return self.pool(features, boxes, shapes) * scale[:, None, None, None]


class MaskOnly:
    def __call__(self, output):
        mask = output["masks"][0, 0]
        return (mask * torch.linspace(0, 1, mask.numel()).view_as(mask)).sum() / mask.numel()


def _gradients(model, x):
    cam = GradCAM(model, *detector_target_layers(model))
    return cam.run_view(x, [MaskOnly()], differentiate=cam.differentiate).gradients[0]


def test_a_box_aware_mask_pooler_gets_the_gradient_through_the_boxes(monkeypatch):
    model = _mask_rcnn()
    layers = detector_target_layers(model).target_layers
    assert fast_roi_heads(model, layers) == [model.roi_heads]  # torchvision's pooler: fast
    model.roi_heads.mask_roi_pool = BoxAwarePool(model.roi_heads.mask_roi_pool)
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    # (before: the fast path took this model, its gradients 1.4% off the full graph's)
    assert fast_roi_heads(model, layers) == []
    got = _gradients(model, x)
    with monkeypatch.context() as patch:  # the definition: the graph over every proposal
        patch.setattr(detection, "fast_roi_heads", lambda *args: [])
        expected = _gradients(model, x)
    for g, e in zip(got, expected):
        assert float(e.abs().max()) > 0
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_a_roi_heads_subclass_with_its_own_forward_keeps_the_slow_path(monkeypatch):
    from torchvision.models.detection.roi_heads import RoIHeads

    class AreaHeads(RoIHeads):
        """Adds each box's area to its detections: differentiable in the boxes."""

        def forward(self, *args, **kwargs):
            result, losses = super().forward(*args, **kwargs)
            for found in result:
                sides = found["boxes"][:, 2:] - found["boxes"][:, :2]
                found["areas"] = sides[:, 0] * sides[:, 1]
            return result, losses

    model = _mask_rcnn()
    model.roi_heads.__class__ = AreaHeads
    layers = detector_target_layers(model).target_layers
    # (before: the fast path took it, and the areas' gradient was all zero)
    assert fast_roi_heads(model, layers) == []
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    cam = GradCAM(model, *detector_target_layers(model))

    def area(output):
        return output["areas"][:3].sum()

    got = cam.run_view(x, [area], differentiate=cam.differentiate).gradients[0]
    with monkeypatch.context() as patch:
        patch.setattr(detection, "fast_roi_heads", lambda *args: [])
        expected = cam.run_view(x, [area], differentiate=cam.differentiate).gradients[0]
    for g, e in zip(got, expected):
        assert float(e.abs().max()) > 0
        torch.testing.assert_close(g, e, rtol=0, atol=0)
