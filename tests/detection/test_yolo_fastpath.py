"""yolo_fastpath: the Detect head's box branch without a graph gives the class scores' own gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_same_model, model_snapshot

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam._core.modes import model_in_eval_mode
from pytorch_grad_cam._core.outputs import sample_output
from pytorch_grad_cam.detection import outputs as detection
from pytorch_grad_cam.detection import yolo_fastpath
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.outputs import predicted_detections
from pytorch_grad_cam.detection.targets import DetectionTarget, predictions_to_targets

SIZE = 64


@pytest.fixture(scope="module")
def yolo():
    ultralytics = pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    return ultralytics.YOLO("yolov8n.yaml", verbose=False)


def _batch() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def _targets(network, x, *, add_iou: bool = False) -> list[DetectionTarget]:
    with model_in_eval_mode(network), torch.no_grad():
        raw = network(x)
    targets = []
    for index in range(x.shape[0]):
        found = predicted_detections(
            sample_output(raw, index, x.shape[0]), score_threshold=0.0, max_detections=2
        )
        if add_iou:  # boxes off the predicted ones, so that the IoU's gradient is not zero
            shifted = found.boxes + torch.tensor([1.5, -1.0, 2.5, 0.5])
            targets.append(DetectionTarget(found.labels, shifted, add_iou=True, iou_threshold=0.3))
        else:
            targets += predictions_to_targets(found)
    return targets


def _gradients(cam, x, targets) -> list[torch.Tensor]:
    with model_in_eval_mode(cam.model):
        return cam.run_view(x, targets, differentiate=cam.differentiate).gradients


@pytest.fixture
def taken(monkeypatch):
    """The box-branch contexts the CAM entered."""
    entered = []

    class Recording(yolo_fastpath.BoxBranchesWithoutGraph):
        def __enter__(self):
            entered.append(self)
            return super().__enter__()

    monkeypatch.setattr(detection, "BoxBranchesWithoutGraph", Recording)
    return entered


def _slow(cam):
    """The CAM with its detection fast paths switched off (the plain forward: the definition)."""
    cam.detection_fast_paths = False
    return cam


def test_class_score_gradients_equal_the_full_graph(yolo, taken, monkeypatch):
    network = yolo.model
    layers, _ = detector_target_layers(yolo)
    cam, x = GradCAM(yolo, layers), _batch()
    targets = _targets(network, x)
    before = model_snapshot(network)
    seen = []
    handle = network.model[-1].cv2[0].register_forward_hook(lambda m, a, out: seen.append(out.requires_grad))
    try:
        fast, fast_maps = _gradients(cam, x, targets), cam(x, targets)
    finally:
        handle.remove()
    assert seen[:2] == [False, False]  # the box branch built no graph (later: a blank-map diagnosis)
    assert len(taken) == 2 and all(context.forwards == 3 for context in taken)  # three levels, each call
    assert_same_model(before, model_snapshot(network))
    _slow(cam)
    slow, slow_maps = _gradients(cam, x, targets), cam(x, targets)
    assert len(taken) == 2
    assert all(float(g.abs().sum()) > 0 for g in slow)
    for got, expected in zip(fast, slow):
        assert torch.equal(got, expected)
    assert (fast_maps == slow_maps).all()


def test_a_target_reading_boxes_keeps_the_box_branch(yolo, taken, monkeypatch):
    network = yolo.model
    layers, _ = detector_target_layers(yolo)
    cam, x = GradCAM(yolo, layers), _batch()
    targets = _targets(network, x, add_iou=True)
    kept = _gradients(cam, x, targets)
    assert taken == []
    _slow(cam)
    slow = _gradients(cam, x, targets)
    for got, expected in zip(kept, slow):
        assert torch.equal(got, expected)
    # the box branch's gradient is real here: forced off, the IoU term's part goes missing
    branches = yolo_fastpath.yolo_box_branches(network, layers)
    with yolo_fastpath.BoxBranchesWithoutGraph(branches):
        forced = _gradients(cam, x, targets)
    assert any(not torch.allclose(f, s, rtol=1e-3, atol=1e-9) for f, s in zip(forced, slow))


def test_branches_holding_a_target_layer_are_kept(yolo):
    network = yolo.model
    head = network.model[-1]
    assert yolo_fastpath.yolo_box_branches(network, []) == list(head.cv2)
    inside = head.cv2[1][0].conv
    assert yolo_fastpath.yolo_box_branches(network, [inside]) == [head.cv2[0], head.cv2[2]]
    assert yolo_fastpath.yolo_box_branches(torch.nn.Conv2d(1, 1, 1), []) == []


def test_grad_mode_is_restored_when_a_branch_raises(yolo):
    head = yolo.model.model[-1]
    branch = head.cv2[0]
    with torch.no_grad(), torch.enable_grad():
        with pytest.raises(RuntimeError), yolo_fastpath.BoxBranchesWithoutGraph([branch]):
            branch(torch.zeros(1, 5, 4, 4))  # the wrong channel count
        assert torch.is_grad_enabled()
    assert not branch._forward_hooks and not branch._forward_pre_hooks


def test_grad_mode_is_restored_when_a_branch_raises_in_run_view(yolo):
    """run_view enters the fast path outside its no_grad: the caller's grad mode, not the forward's."""
    network = yolo.model
    layers, _ = detector_target_layers(yolo)
    cam = GradCAM(yolo, layers)

    def fail(module, args, output):
        raise RuntimeError("a hook of the user's")

    handle = network.model[-1].cv2[0][0].register_forward_hook(fail)
    try:
        with torch.no_grad():
            with pytest.raises(RuntimeError, match="a hook of the user's"):
                _gradients(cam, _batch(), None)
            assert not torch.is_grad_enabled()
    finally:
        handle.remove()


class _Wrapped(torch.nn.Module):
    """A module around the DetectionModel whose (B, 4 + classes) output has the boxes' rows."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0].amax(dim=-1)


def test_a_wrapped_network_keeps_the_box_branch(yolo, taken, monkeypatch):
    """targets=None on a wrapper is the classifier default (here a box row), not a detection target."""
    layers, _ = detector_target_layers(yolo)
    wrapped = _Wrapped(yolo.model)
    cam, x = GradCAM(wrapped, layers), _batch()
    with model_in_eval_mode(wrapped), torch.no_grad():
        assert (wrapped(x).argmax(dim=-1) < 4).all()  # the top "class" is a box coordinate
    kept = _gradients(cam, x, None)
    assert taken == []
    _slow(cam)
    slow = _gradients(cam, x, None)
    assert all(float(g.abs().sum()) > 0 for g in slow)
    for got, expected in zip(kept, slow):
        assert torch.equal(got, expected)


class _ReadsBoxes(DetectionTarget):
    """A subclass whose score adds its image's box rows: its reads are not DetectionTarget's."""

    def __call__(self, output):
        raw = output[0] if isinstance(output, tuple) else output
        return super().__call__(output) + 1e-3 * raw[:4].sum()


def test_a_detection_target_subclass_keeps_the_box_branch(yolo, taken, monkeypatch):
    network = yolo.model
    layers, _ = detector_target_layers(yolo)
    cam, x = GradCAM(yolo, layers), _batch()
    targets = [_ReadsBoxes(t.labels, t.boxes) for t in _targets(network, x)]
    kept = _gradients(cam, x, targets)
    assert taken == []
    _slow(cam)
    slow = _gradients(cam, x, targets)
    for got, expected in zip(kept, slow):
        assert torch.equal(got, expected)
