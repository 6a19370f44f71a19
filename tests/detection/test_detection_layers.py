"""Detectors end to end: default layers, targets on real outputs, every method, the model left alone.

Random weights, small inputs: torchvision's detector classes (the smallest backbones), ultralytics
YOLOv8n from its YAML, and HuggingFace DETR / Conditional DETR / RT-DETR from small configs.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from conftest import LAYER_METHODS, assert_same_model, layer_output, model_snapshot
from torch import nn

from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM, HiResCAM, ScoreCAM
from pytorch_grad_cam._core.modes import model_in_eval_mode
from pytorch_grad_cam._core.outputs import sample_output
from pytorch_grad_cam.ablation_layer import AblationLayerMultiScale
from pytorch_grad_cam.attention.base import AttentionCAM
from pytorch_grad_cam.detection.layers import detector_target_layers
from pytorch_grad_cam.detection.outputs import model_detections, predicted_detections
from pytorch_grad_cam.detection.targets import DetectionTarget, predictions_to_targets
from pytorch_grad_cam.errors import BlankMapWarning, NotApplicableError
from pytorch_grad_cam.layer_search import find_target_layer
from pytorch_grad_cam.registry import METHODS
from pytorch_grad_cam.utils.reshape_transforms import multiscale_reshape_transform

SIZE = 64


def _resnet18_fpn(extra_p6p7: bool):
    from torchvision.models import resnet18
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    if not extra_p6p7:  # the R-CNN anchors: levels of strides 4 to 64
        return _resnet_fpn_extractor(resnet18(), 5)
    return _resnet_fpn_extractor(
        resnet18(), 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )


def _torchvision(name: str) -> nn.Module:
    from torchvision.models import detection

    torch.manual_seed(0)
    small = {"min_size": SIZE, "max_size": SIZE}
    if name == "fasterrcnn":
        return detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=5, box_detections_per_img=10, **small
        )
    if name == "maskrcnn":
        return detection.MaskRCNN(_resnet18_fpn(False), 5, box_detections_per_img=5, **small)
    if name == "retinanet":
        return detection.RetinaNet(_resnet18_fpn(True), 5, score_thresh=0.0, detections_per_img=10, **small)
    if name == "fcos":
        return detection.FCOS(_resnet18_fpn(True), 5, score_thresh=0.0, detections_per_img=10, **small)
    return detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5, detections_per_img=10
    )


TORCHVISION = ["fasterrcnn", "maskrcnn", "retinanet", "fcos", "ssdlite"]


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _check_map(cam_map: np.ndarray) -> None:
    assert cam_map.shape == (1, SIZE, SIZE) and np.isfinite(cam_map).all()
    assert cam_map.min() >= 0 and cam_map.max() <= 1


def _reaches_the_layers(cam, x, targets) -> float:
    """The size of the target score's gradient at the target layers (0 if it does not reach them)."""
    with model_in_eval_mode(cam.model):
        view = cam.run_view(x, targets, differentiate=cam.differentiate)
    return float(sum(g.abs().sum() for g in view.gradients))


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_detectors(name):
    model = _torchvision(name).eval()
    x = _image()
    with torch.no_grad():
        output = model(x)[0]
    assert output["boxes"].shape[0] > 1
    # the target of one detection scores that detection, whichever it is in the list
    j = int(output["scores"].argmin())
    target = DetectionTarget(output["labels"][j : j + 1], output["boxes"][j : j + 1])
    torch.testing.assert_close(target(output), output["scores"][j])
    layers, transform = detector_target_layers(model)
    assert layers == [model.backbone] and transform is multiscale_reshape_transform
    before = model_snapshot(model)
    cam = GradCAM(model, layers, reshape_transform=transform)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "the target scores do not depend on the target layers" fails
        if name == "ssdlite":  # random MobileNetV3 BatchNorms shrink its maps to a span of about 1e-18
            warnings.filterwarnings("ignore", message=r"blank map .* spans only", category=BlankMapWarning)
        _check_map(cam(x))
        _check_map(cam(x, [DetectionTarget(output["labels"][:1], output["boxes"][:1])]))
        assert _reaches_the_layers(cam, x, [target]) > 0
    assert_same_model(before, model_snapshot(model))


@pytest.fixture(scope="module")
def yolo():
    ultralytics = pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    return ultralytics.YOLO("yolov8n.yaml", verbose=False)


def test_yolo_object_is_explained_through_its_network_without_training(yolo, tmp_path, monkeypatch):
    from ultralytics.engine.model import Model

    def no_training(*args, **kwargs):
        raise AssertionError("the YOLO wrapper's train() was called")

    monkeypatch.setattr(Model, "train", no_training)
    monkeypatch.setattr(Model, "predict", no_training)
    monkeypatch.chdir(tmp_path)
    x = _image()
    network = yolo.model
    layers, transform = detector_target_layers(yolo)
    assert transform is None and layers == [network.model[i] for i in network.model[-1].f]
    before = model_snapshot(network)
    cam = GradCAM(yolo, layers)
    assert cam.model is network
    (found,) = model_detections(yolo, x, score_threshold=0.0, max_detections=3)  # the YOLO object
    with model_in_eval_mode(network), torch.no_grad():
        raw = network(x)  # the same forward the CAM runs
    expected = predicted_detections(sample_output(raw, 0, 1), score_threshold=0.0, max_detections=3)
    assert found.slots.tolist() == expected.slots.tolist()
    assert found.labels.tolist() == expected.labels.tolist()
    targets = predictions_to_targets(found)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_map(cam(x, targets))
        assert _reaches_the_layers(cam, x, targets) > 0
    assert cam.outputs[0].shape == (1, 4 + 80, 84)  # the raw head output, 84 anchors at 64x64
    # a user's box is matched to the anchor the detector's own NMS kept for it
    user = DetectionTarget(found.labels[:1], found.boxes[:1])
    _check_map(cam(x, [user]))
    assert user.slots.tolist() == found.slots[:1].tolist()
    assert yolo.trainer is None and yolo.predictor is None
    assert os.listdir(tmp_path) == []
    assert_same_model(before, model_snapshot(network))
    with pytest.raises(ValueError, match="predicts none in image 0"):
        cam(x)  # random weights: no class probability reaches the 0.25 threshold


def _detr(kind: str):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    small = {
        "use_pretrained_backbone": False,
        "use_timm_backbone": False,
        "d_model": 16,
        "decoder_layers": 1,
        "decoder_attention_heads": 2,
        "decoder_ffn_dim": 16,
        "num_labels": 3,
    }
    if kind == "rtdetr":
        backbone = transformers.RTDetrResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16, 16, 16],
            depths=[1, 1, 1, 1],
            out_features=["stage2", "stage3", "stage4"],
            layer_type="basic",
        )
        config = transformers.RTDetrConfig(
            backbone_config=backbone,
            encoder_hidden_dim=16,
            encoder_in_channels=[16, 16, 16],
            decoder_in_channels=[16, 16, 16],
            encoder_ffn_dim=16,
            encoder_attention_heads=2,
            num_queries=10,
            decoder_n_points=2,
            num_denoising=0,
            anchor_image_size=None,
            **small,
        )
        return transformers.RTDetrForObjectDetection(config)
    resnet = {"model_type": "resnet", "depths": [1, 1], "hidden_sizes": [8, 16], "embedding_size": 8}
    config_class, model_class = {
        "detr": (transformers.DetrConfig, transformers.DetrForObjectDetection),
        "conditional": (transformers.ConditionalDetrConfig, transformers.ConditionalDetrForObjectDetection),
    }[kind]
    config = config_class(
        backbone_config={**resnet, "out_features": ["stage2"]},
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=16,
        num_queries=5,
        **small,
    )
    return model_class(config)


@pytest.mark.parametrize("kind", ["detr", "conditional", "rtdetr"])
def test_detr_family(kind):
    model = _detr(kind).eval()
    x = _image()
    with torch.no_grad():
        output = sample_output(model(x), 0, 1)
    found = predicted_detections(output, image_size=(SIZE, SIZE), score_threshold=0.0)
    # a box given in pixels finds the query that predicted it
    target = DetectionTarget(found.labels[:1], found.boxes[:1])
    target.bind(output, (SIZE, SIZE))
    assert target.slots.tolist() == found.slots[:1].tolist()
    torch.testing.assert_close(target(output), found.scores[0])
    layers, transform = detector_target_layers(model)
    expected = list(model.model.decoder_input_proj) if kind == "rtdetr" else [model.model.input_projection]
    assert layers == expected and transform is None
    before = model_snapshot(model)
    cam = GradCAM(model, layers)
    with warnings.catch_warnings():
        # no warning: neither "the target scores do not depend on the target layers" nor a blank
        # map (with random weights one of RT-DETR's three levels is blank on its own, which the
        # diagnostics keep in cam.diagnostics without a warning: the mean of the levels is not)
        warnings.simplefilter("error")
        cam_map = cam(x, [DetectionTarget(found.labels[:1], found.boxes[:1])])
        _check_map(cam_map)
        assert cam_map.max() > 0
        assert _reaches_the_layers(cam, x, predictions_to_targets(found)) > 0
    assert_same_model(before, model_snapshot(model))


class CellDetector(nn.Module):
    """A YOLO-layout detector on ``(B, 1, 16, 16)`` inputs: 16 anchors, one per 4x4 cell, one class.

    ``features`` (a 1x1 convolution of weight 1) passes the image on; anchor ``a``'s class score is
    ``sigmoid(mean of the image over cell a)`` and its box is cell ``a`` itself. The score of a box
    depends on its cell of the input only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        nn.init.ones_(self.features.weight)
        rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
        centres = torch.stack([cols.flatten() * 4 + 2, rows.flatten() * 4 + 2])
        self.register_buffer("boxes", torch.cat([centres, torch.full((2, 16), 4.0)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(nn.functional.avg_pool2d(self.features(x), 4).flatten(1))
        return torch.cat([self.boxes.expand(x.shape[0], 4, 16), scores[:, None]], dim=1)


@pytest.mark.parametrize("method", [HiResCAM, METHODS["layercam"].cls, METHODS["gradcamelementwise"].cls])
def test_the_map_of_a_box_lies_in_the_region_its_score_depends_on(method):
    model = CellDetector().eval()
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    target = DetectionTarget([0], [[8, 4, 12, 8]])  # row 1, column 2: anchor 6
    cam_map = method(model, [model.features])(x, [target])[0]
    assert target.slots.tolist() == [6]
    inside = np.zeros((16, 16), dtype=bool)
    inside[4:8, 8:12] = True
    assert cam_map[~inside].max() == 0 and cam_map[inside].min() > 0


def test_a_gradcam_map_does_not_lie_in_the_region_the_check_above_can_fail():
    model = CellDetector().eval()
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    cam_map = GradCAM(model, [model.features])(x, [DetectionTarget([0], [[8, 4, 12, 8]])])[0]
    assert cam_map[:4].max() > 0  # GradCAM's channel weight spreads over the whole map


NOT_FOR_DETECTORS = {
    "finercam": "compares a class with similar classes of a classifier",
    "cam": "needs the linear classifier head after global pooling",
    # the attention methods read a transformer's attention: a convolutional detector has none
    **{
        name: "reads a transformer's attention"
        for name, info in METHODS.items()
        if issubclass(info.cls, AttentionCAM)
    },
}


@pytest.mark.parametrize(
    "name", sorted(name for name in METHODS if issubclass(METHODS[name].cls, AttentionCAM))
)
def test_attention_methods_refuse_a_convolutional_detector(name):
    model = CellDetector().eval()
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    with pytest.raises(NotApplicableError, match="no attention|does not know the blocks"):
        METHODS[name].cls(model)(x, [DetectionTarget([0], [[8, 4, 12, 8]])])


def test_gradcam_of_a_box_golden_value():
    """One channel, A = x: the box's score gradient is positive on its cell only, so GradCAM's one
    weight (its mean over the map) is positive and the map is the image itself, min-max scaled."""
    model = CellDetector().eval()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = [DetectionTarget([0], [[8, 4, 12, 8]]), DetectionTarget([0], [[0, 0, 4, 4]])]
    cam_map = GradCAM(model, [model.features])(x, targets)
    flat = x[:, 0].flatten(1)
    expected = (flat - flat.amin(1, keepdim=True)) / (flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True))
    # the weight is sigmoid'(m) / 256 ~ 1e-3: the 1e-7 guard of the scaling moves the map by ~1e-4
    np.testing.assert_allclose(cam_map.reshape(2, -1), expected.numpy(), atol=1e-3)
    assert [t.slots.tolist() for t in targets] == [[6], [0]]


@pytest.mark.parametrize("name", sorted(set(METHODS) - set(NOT_FOR_DETECTORS)))
def test_every_method_runs_on_a_detector_output(name):
    model = CellDetector().eval()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = [DetectionTarget([0], [[8, 4, 12, 8]]), DetectionTarget([0], [[0, 0, 4, 4]])]
    before = model_snapshot(model)
    cam_map = METHODS[name].cls(model, [model.features])(x, targets)
    assert cam_map.shape == (2, 16, 16) and np.isfinite(cam_map).all()
    assert_same_model(before, model_snapshot(model))


def test_eigencam_ablationcam_scorecam_on_a_feature_pyramid():
    model = _torchvision("fasterrcnn").eval()
    x = _image()
    layers, transform = detector_target_layers(model)
    with torch.no_grad():
        output = model(x)[0]
    target = DetectionTarget(output["labels"][:2], output["boxes"][:2])
    before = model_snapshot(model)
    _check_map(EigenCAM(model, layers, reshape_transform=transform)(x))
    options = {
        "reshape_transform": transform,
        "ablation_layer": AblationLayerMultiScale(),
        "ratio_channels_to_ablate": 0.005,  # 4 of the pyramid's 768 channels: it only has to run
    }
    ablation = AblationCAM(model, layers, batch_size=4, **options)
    with pytest.warns(UserWarning, match="does not run on a batch of ablated copies"):
        repeated = ablation(x, [target])  # a two-stage detector: the image is repeated instead
    _check_map(repeated)
    # the default, one copy per pass for one image: the image's own pass takes it, same map
    ablation = AblationCAM(model, layers, **options)
    np.testing.assert_array_equal(ablation(x, [target]), repeated)
    assert ablation.routes == ["prefix"] and not ablation.used_fallback
    assert_same_model(before, model_snapshot(model))


def test_scorecam_on_yolo_neck(yolo):
    x = _image()
    network = yolo.model
    layer = network.model[network.model[-1].f[0]]
    found = predicted_detections(network.eval()(x)[0][0], score_threshold=0.0, max_detections=2)
    network.train()
    cam = ScoreCAM(yolo, [layer])
    cam.batch_size = 64
    _check_map(cam(x, predictions_to_targets(found)))
    _check_map(EigenCAM(yolo, [layer])(x))


NOT_YOLO = "finercam"  # a classifier's comparison of classes
GRADIENT_METHODS = [name for name in LAYER_METHODS if METHODS[name].uses_gradients and name != NOT_YOLO]


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_every_gradient_method_on_yolo(yolo, name):
    x = _image()
    network = yolo.model
    layer = network.model[network.model[-1].f[0]]
    with model_in_eval_mode(network), torch.no_grad():
        found = predicted_detections(network(x)[0][0], score_threshold=0.0, max_detections=2)
    before = model_snapshot(network)
    _check_map(METHODS[name].cls(yolo, [layer])(x, predictions_to_targets(found)))
    assert_same_model(before, model_snapshot(network))


def test_shapleycam_needs_a_second_derivative_that_roi_align_lacks():
    model = _torchvision("fasterrcnn").eval()
    layers, transform = detector_target_layers(model)
    with pytest.raises(RuntimeError, match="double backwards on roi_align not supported"):
        METHODS["shapleycam"].cls(model, layers, reshape_transform=transform)(_image())


def test_aug_smooth_is_refused_for_detectors(yolo):
    model = CellDetector().eval()
    x = torch.rand(1, 1, 16, 16)
    cam = HiResCAM(model, [model.features])
    with pytest.raises(ValueError, match="aug_smooth=True averages horizontally flipped views"):
        cam(x, [DetectionTarget([0], [[0, 0, 4, 4]])], aug_smooth=True)
    assert cam(x, [lambda output: output[4, 6]], aug_smooth=True).shape == (1, 16, 16)  # another target
    layers, _ = detector_target_layers(yolo)
    with pytest.raises(ValueError, match="call the CAM with aug_smooth=False for a detector"):
        GradCAM(yolo, layers)(_image(), aug_smooth=True)


@pytest.mark.parametrize("config", ["yolo11n.yaml", "yolov5nu.yaml"])
def test_other_yolo_generations(config):
    ultralytics = pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    model = ultralytics.YOLO(config, verbose=False)
    x = _image()
    (found,) = model_detections(model, x, score_threshold=0.0, max_detections=2)
    target = DetectionTarget(found.labels[:1], found.boxes[:1])
    layers, _ = detector_target_layers(model)
    _check_map(GradCAM(model, layers)(x, [target]))
    assert target.slots.tolist() == found.slots[:1].tolist()


def test_an_end_to_end_yolo_head_is_refused():
    ultralytics = pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    model = ultralytics.YOLO("yolo26n.yaml", verbose=False)
    model.model.model[-1].end2end = True  # an NMS-free head: (B, max_det, 6) boxes
    layers, _ = detector_target_layers(model)
    with pytest.raises(ValueError, match=r"returns \(1, 84, 6\), not the raw head output \(B, 4 \+ 80"):
        model_detections(model, _image())
    with pytest.raises(ValueError, match="end-to-end heads"):
        GradCAM(model, layers)(_image(), [DetectionTarget([0], [[0, 0, 8, 8]])])
    with pytest.raises(ValueError, match="end-to-end heads"):
        GradCAM(model, layers)(_image())


def test_detr_encoder_tokens_through_the_token_grid():
    import functools

    from pytorch_grad_cam.utils.reshape_transforms import token_grid_reshape_transform

    model = _detr("detr").eval()
    x = torch.rand(1, 3, 96, 64, generator=torch.Generator().manual_seed(0))  # a 12 x 8 grid at stride 8
    (found,) = model_detections(model, x, score_threshold=0.0, max_detections=1)
    layer = model.model.encoder.layers[-1]
    assert layer_output(model, layer, x).shape == (1, 96, 16)
    transform = functools.partial(token_grid_reshape_transform, image_size=(96, 64))
    assert transform(layer_output(model, layer, x)).shape == (1, 16, 12, 8)
    cam_map = GradCAM(model, [layer], reshape_transform=transform)(x, predictions_to_targets(found))
    assert cam_map.shape == (1, 96, 64) and np.isfinite(cam_map).all()


def test_a_detector_without_target_layers_gets_its_default_layers():
    # no target_layers: a known detector is explained at detector_target_layers' layers (the
    # feature pyramid with its multi-scale reshape), not at a layer the generic search would pick
    model = _torchvision("fasterrcnn").eval()
    x = _image()
    layers, transform = detector_target_layers(model)
    expected = GradCAM(model, layers, reshape_transform=transform)(x)
    cam = GradCAM(model)
    np.testing.assert_array_equal(cam(x), expected)
    assert cam.target_layers == [model.backbone] and cam.reshape_transform is multiscale_reshape_transform
    assert cam.layer_choice.detector == "FasterRCNN" and cam.layer_choice.name == "backbone"


def test_find_target_layer_gives_a_detector_what_the_cam_chooses():
    """One answer: the function the user calls to see the choice is the one the CAM calls."""
    model = _torchvision("fasterrcnn").eval()
    x = _image()
    choice = find_target_layer(model, x)
    cam = GradCAM(model)
    cam(x)
    assert choice.layers == cam.target_layers == [model.backbone]
    assert choice.reshape_transform is cam.reshape_transform is multiscale_reshape_transform
    assert choice.reason == "target layers backbone: the default feature maps of a FasterRCNN (not searched)"
