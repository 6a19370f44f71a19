"""The R-CNN fast path: the same maps, gradients and detections as the graph over every proposal."""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch
from conftest import assert_same_model, model_snapshot
from torch import nn

from pytorch_grad_cam import EigenCAM, GradCAM
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.outputs import gradient_forward
from pytorch_grad_cam.detection.rcnn_fastpath import RCNNFastPath, fast_roi_heads, proposal_rows
from pytorch_grad_cam.utils.model_targets import DetectionTarget, FasterRCNNBoxScoreTarget

detection = pytest.importorskip("torchvision.models.detection")


def _rcnn(**options) -> nn.Module:
    """Seeded random weights, the backbone's batch-norm statistics those of a few random images
    (left at their initial values, the random backbone's maps are constant to 1e-8 and every
    proposal gets the same scores), the predictor's weights scaled down."""
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, **options)
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # a cumulative average: one batch gives its statistics
    model.backbone.train()
    with torch.no_grad():
        model.backbone(torch.rand(4, 3, 320, 320, generator=torch.Generator().manual_seed(5)) - 0.5)
    for norm in norms:
        norm.momentum = 0.1
    with torch.no_grad():  # logits of tens would saturate most scores at exactly 1.0
        model.roi_heads.box_predictor.cls_score.weight.mul_(0.05)
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(0.1)
    return model.eval()


@pytest.fixture(scope="module")
def rcnn():
    # box_score_thresh=0 keeps the usual 100 detections of random weights
    return _rcnn(box_score_thresh=0.0)


@pytest.fixture(scope="module")
def pair():
    return torch.rand(2, 3, 320, 320, generator=torch.Generator().manual_seed(1))


def _recorded(model, x):
    """A plain no-grad forward, with what the ROI heads' box branch saw and gave."""
    heads, seen = model.roi_heads, {}

    def keep(name, pick):
        def hook(module, *inputs_and_output):
            seen[name] = pick(inputs_and_output)  # returns None: the forward is unchanged

        return hook

    handles = [
        heads.box_roi_pool.register_forward_pre_hook(keep("args", lambda io: io[0])),
        heads.box_predictor.register_forward_hook(keep("out", lambda io: io[1])),
        heads.register_forward_hook(keep("detections", lambda io: io[1][0])),
    ]
    try:
        with torch.no_grad():
            outputs = model(x)
    finally:
        for handle in handles:
            handle.remove()
    _, proposals, shapes = seen["args"]
    logits, regression = seen["out"]
    rows = proposal_rows(logits, regression, proposals, shapes, seen["detections"], heads.box_coder)
    return outputs, rows, proposals, logits


@pytest.fixture(scope="module")
def recorded(rcnn, pair):
    return _recorded(rcnn, pair)


def without_fast_paths(cam):
    """The CAM with its detection fast paths switched off (the plain forward: the definition)."""
    cam.detection_fast_paths = False
    return cam


def _view(cam, x, targets):
    """A view and a call; with the contexts their forwards ran in (from each one's seam)."""
    view = cam.run_view(x, targets, differentiate=cam.differentiate)
    made = list(cam.seam.forwards)
    maps = cam(x, targets)
    return view, maps, made + cam.seam.forwards


def _assert_same_gradients(fast, slow):
    for f, s in zip(fast, slow):
        scale = float(s.abs().max())
        assert scale > 0
        torch.testing.assert_close(f, s, rtol=1e-4, atol=1e-5 * scale)


def test_proposal_rows_give_each_detection_its_own_proposal(recorded):
    outputs, rows, proposals, logits = recorded
    assert [r.shape for r in rows] == [torch.Size([100]), torch.Size([100])]
    offset = 0
    for found, own, image_rows in zip(outputs, proposals, rows):
        probabilities = torch.softmax(logits[offset : offset + own.shape[0]], -1)
        assert torch.equal(probabilities[image_rows, found["labels"]], found["scores"])
        offset += own.shape[0]
    # several classes of one proposal survive NMS: rows repeat, but not all of them
    assert 10 < rows[0].unique().numel() < 90 and 10 < rows[1].unique().numel() < 90
    assert 0.3 < float(outputs[0]["scores"][0]) < 0.99  # not saturated: gradients that matter


def _targets(outputs, rows):
    """Image 0: two boxes of different proposals (one scored with its IoU); image 1: two boxes of
    one proposal (different classes)."""
    first = rows[0]
    other = int(torch.nonzero(first != first[0])[0])
    shared = next((a, b) for a in range(100) for b in range(a + 1, 100) if int(rows[1][a]) == int(rows[1][b]))
    image0 = [0, other]
    image1 = list(shared)
    return [
        DetectionTarget(outputs[0]["labels"][image0], outputs[0]["boxes"][image0], add_iou=True),
        DetectionTarget(outputs[1]["labels"][image1], outputs[1]["boxes"][image1]),
    ]


def test_fast_path_equals_the_graph_over_every_proposal(monkeypatch, rcnn, pair, recorded):
    outputs, rows, _, _ = recorded
    targets = _targets(outputs, rows)
    cam = GradCAM(rcnn, *detector_target_layers(rcnn))
    fast_view, fast_maps, made = _view(cam, pair, targets)
    assert [(c.fast_forwards, c.slow_forwards) for c in made] == [(1, 0), (1, 0)]
    slow_view, slow_maps, made = _view(without_fast_paths(cam), pair, targets)
    assert [type(c) for c in made] == [contextlib.nullcontext] * 2
    _assert_same_gradients(fast_view.gradients[0], slow_view.gradients[0])
    torch.testing.assert_close(torch.as_tensor(fast_maps), torch.as_tensor(slow_maps), rtol=0, atol=1e-5)
    # the detections the model returns are its own, bit for bit
    for fast, slow, plain in zip(fast_view.outputs, slow_view.outputs, outputs):
        for key in plain:
            assert torch.equal(fast[key], plain[key]) and torch.equal(slow[key], plain[key]), key


def test_fast_path_with_the_1_5_target(monkeypatch, rcnn, pair, recorded):
    outputs = recorded[0]
    targets = [FasterRCNNBoxScoreTarget(o["labels"][:3], o["boxes"][:3]) for o in outputs]
    cam = GradCAM(rcnn, *detector_target_layers(rcnn))
    fast = cam.run_view(pair, targets, differentiate=cam.differentiate)
    made = cam.seam.forwards
    assert made[0].fast_forwards == 1
    slow = without_fast_paths(cam).run_view(pair, targets, differentiate=cam.differentiate)
    _assert_same_gradients(fast.gradients[0], slow.gradients[0])


def test_the_model_is_left_as_it_was(monkeypatch, pair, recorded):
    rcnn = _rcnn(box_score_thresh=0.0).train()
    rcnn.backbone.body["0"].eval()
    before = model_snapshot(rcnn)
    cam = GradCAM(rcnn, *detector_target_layers(rcnn))
    cam(pair, _targets(*recorded[:2]))
    made = cam.seam.forwards
    assert made[0].fast_forwards == 1
    assert_same_model(before, model_snapshot(rcnn))


class RowMixingHead(nn.Module):
    """A box head whose rows depend on the other proposals (the fast path must notice)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.head(x)
        return rows + rows.mean(dim=0, keepdim=True)


def test_a_box_head_mixing_rows_falls_back_to_the_slow_path(monkeypatch, pair):
    model = _rcnn(num_classes=5, box_score_thresh=0.0, box_detections_per_img=10)
    model.roi_heads.box_head = RowMixingHead(model.roi_heads.box_head)
    with torch.no_grad():
        outputs = model(pair[:1])
    targets = [DetectionTarget(outputs[0]["labels"][:2], outputs[0]["boxes"][:2])]
    cam = GradCAM(model, *detector_target_layers(model))
    fast = cam.run_view(pair[:1], targets, differentiate=cam.differentiate)
    made = cam.seam.forwards
    assert (made[0].fast_forwards, made[0].slow_forwards) == (0, 1)
    slow = without_fast_paths(cam).run_view(pair[:1], targets, differentiate=cam.differentiate)
    _assert_same_gradients(fast.gradients[0], slow.gradients[0])
    for key in outputs[0]:
        assert torch.equal(fast.outputs[0][key], outputs[0][key])


def _mask_rcnn():
    from torchvision.models import resnet18
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet18(), 5)  # levels of strides 4 to 64, as the anchors
    return detection.MaskRCNN(backbone, 5, min_size=96, max_size=96, box_detections_per_img=6).eval()


class MaskAndScore:
    """Scores detection 0's mask (a weighted sum) and the scores of detections 0 and 1."""

    def __call__(self, output):
        mask = output["masks"][0, 0]
        weights = torch.linspace(0, 1, mask.numel()).view_as(mask)
        return (mask * weights).sum() / mask.numel() + output["scores"][:2].sum()


def test_mask_rcnn_masks_and_scores(monkeypatch):
    model = _mask_rcnn()
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    cam = GradCAM(model, *detector_target_layers(model))
    fast = cam.run_view(x, [MaskAndScore()], differentiate=cam.differentiate)
    made = cam.seam.forwards
    assert made[0].fast_forwards == 1
    slow = without_fast_paths(cam).run_view(x, [MaskAndScore()], differentiate=cam.differentiate)
    _assert_same_gradients(fast.gradients[0], slow.gradients[0])
    assert torch.equal(fast.outputs[0]["masks"], slow.outputs[0]["masks"])


def test_which_models_take_the_fast_path(rcnn):
    layers = detector_target_layers(rcnn).target_layers
    assert fast_roi_heads(rcnn, layers) == [rcnn.roi_heads]
    # a target layer inside the ROI heads, or around them, must see their graph: the slow path
    assert fast_roi_heads(rcnn, [rcnn.roi_heads.box_head.fc7]) == []
    assert fast_roi_heads(rcnn, [rcnn]) == []
    # keypoints are computed from the boxes differentiably: the slow path
    torch.manual_seed(0)
    keypoints = detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    assert fast_roi_heads(keypoints, detector_target_layers(keypoints).target_layers) == []
    retinanet = detection.RetinaNet(keypoints.backbone, 3)
    assert fast_roi_heads(retinanet, [retinanet.backbone]) == []
    assert isinstance(gradient_forward(rcnn, layers, track_gradients=True), RCNNFastPath)
    assert isinstance(gradient_forward(rcnn, layers, track_gradients=False), contextlib.nullcontext)


def test_gradient_free_methods_and_other_threads_are_untouched(monkeypatch, rcnn, pair):
    eigen = EigenCAM(rcnn, *detector_target_layers(rcnn))
    eigen(pair[:1])
    made = eigen.seam.forwards
    assert isinstance(made[0], contextlib.nullcontext)
    # a forward of another thread while the hooks are in place: no graph, no fast path
    path = RCNNFastPath([rcnn.roi_heads])
    seen = {}

    def other():
        with torch.enable_grad():
            seen["out"] = rcnn(pair[:1])

    with path:
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert (path.fast_forwards, path.slow_forwards) == (0, 0)
    assert seen["out"][0]["scores"].requires_grad  # the other thread's forward ran as it does


def test_ties_resolve_to_the_proposal_torchvision_keeps(rcnn):
    """Proposals 0 and 1 differ only left of the image: clipped, they give the same box and score."""
    heads = rcnn.roi_heads
    classes = heads.box_predictor.cls_score.out_features
    proposals = torch.tensor([[-5.0, 2.0, 10.0, 12.0], [-7.0, 2.0, 10.0, 12.0], [30.0, 30.0, 40.0, 40.0]])
    logits = torch.zeros(3, classes)
    logits[:, 5] = 3.0
    logits = logits.requires_grad_()
    regression = torch.zeros(3, 4 * classes, requires_grad=True)
    clipped = heads.box_coder.decode(regression.detach(), [proposals]).clamp(0, 50)
    assert torch.equal(clipped[0], clipped[1]) and not torch.equal(proposals[0], proposals[1])
    for order in ([0, 1, 2], [1, 0, 2]):
        boxes, scores, labels = heads.postprocess_detections(
            logits, regression, [proposals[order]], [(50, 50)]
        )
        detections = [{"boxes": boxes[0].detach(), "scores": scores[0].detach(), "labels": labels[0]}]
        d = int(torch.nonzero((labels[0] == 5) & (boxes[0][:, 0] == 0))[0])
        assert boxes[0][d].tolist() == [0.0, 2.0, 10.0, 12.0]
        # the row torchvision kept is the one its box's gradient reaches
        (grad,) = torch.autograd.grad(boxes[0][d, 2], regression)
        kept = int(torch.nonzero(grad.abs().sum(dim=1))[0])
        rows = proposal_rows(
            logits.detach(), regression.detach(), [proposals[order]], [(50, 50)], detections, heads.box_coder
        )
        assert int(rows[0][d]) == kept == 0
