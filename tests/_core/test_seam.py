"""The seam between a CAM call and the detection package: chosen once per call, by type, import-free."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import numpy as np
import torch
from torch import nn
from torchvision.models import detection

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam._core.seam import PLAIN, choose_seam
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.outputs import predicted_detections
from pytorch_grad_cam.detection.rcnn_fastpath import RCNNFastPath
from pytorch_grad_cam.detection.seam import DetectionSeam
from pytorch_grad_cam.detection.targets import DetectionTarget, predictions_to_targets
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget


def test_a_classifier_call_imports_no_detection_code_and_no_application_code():
    """In a fresh process: the package, a call with given layers and one that searches its layer."""
    script = textwrap.dedent(
        """
        import sys
        import torch
        import torchvision
        from pytorch_grad_cam import GradCAM

        torch.manual_seed(0)
        model = torchvision.models.resnet18().eval()
        x = torch.randn(1, 3, 64, 64)
        GradCAM(model, [model.layer4[-1]])(x, [3])
        GradCAM(model)(x)
        names = ("pytorch_grad_cam.detection", "pytorch_grad_cam.cli")
        print(sorted(name for name in sys.modules if name.startswith(names)))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_classifier_call_runs_without_the_detection_package(small_cnn, images, monkeypatch):
    """The detection package's seam is the only way into it; blocked, a classifier's call still runs."""
    for name in ("pytorch_grad_cam.detection.seam", "pytorch_grad_cam.detection.targets"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now raises ImportError
    cam = GradCAM(small_cnn, [small_cnn.block2])
    for targets in (None, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)]):
        maps = cam(images(2, size=8), targets)
        assert cam.seam is PLAIN and maps.shape == (2, 8, 8)


class TwoBoxes(nn.Module):
    """A torchvision-style detector of no class the lookup knows: two fixed boxes, box ``k`` scored
    ``sigmoid(mean of channel k of features(x) over the box)``."""

    BOXES = torch.tensor([[0.0, 0.0, 8.0, 6.0], [10.0, 8.0, 16.0, 12.0]])

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.features.weight.fill_(0.5)
            self.features.bias.fill_(0.1)

    def forward(self, x):
        maps = self.features(x)
        return [
            {
                "boxes": self.BOXES.clone(),
                "labels": torch.tensor([1, 2]),
                "scores": torch.sigmoid(torch.stack([m[0, 0:6, 0:8].mean(), m[1, 8:12, 10:16].mean()])),
            }
            for m in maps
        ]


def test_an_unknown_detector_gets_the_plain_seam_and_still_its_boxes_as_default_targets():
    model = TwoBoxes().eval()
    x = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    assert choose_seam(model, None) is PLAIN
    cam = GradCAM(model, [model.features])
    default = cam(x)
    assert cam.seam is PLAIN
    with torch.no_grad():
        found = [predicted_detections(o) for o in model(x)]
    explicit = cam(x, [predictions_to_targets(f)[0] for f in found])
    assert isinstance(cam.seam, DetectionSeam)  # the targets are detection targets: the detection seam
    np.testing.assert_array_equal(default, explicit)


def test_a_known_detector_gets_the_detection_seam_and_its_fast_path_can_be_switched_off():
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64, box_score_thresh=0.0
    ).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        found = predicted_detections(model(x)[0])
    targets = [DetectionTarget(found.labels[:2], found.boxes[:2])]
    seam = choose_seam(model, None)
    assert isinstance(seam, DetectionSeam) and seam.fast_paths
    cam = GradCAM(model, *detector_target_layers(model))
    fast = cam(x, targets)
    assert [type(c) for c in cam.seam.forwards] == [RCNNFastPath]
    cam.detection_fast_paths = False
    slow = cam(x, targets)
    assert [type(c) for c in cam.seam.forwards] == [contextlib.nullcontext]
    np.testing.assert_allclose(fast, slow, atol=1e-5)
