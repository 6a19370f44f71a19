"""One CAM per detected box, for an ultralytics YOLO detector (YOLOv5u, v8, 11).

    python usage_examples/yolo_example.py --weights yolov8n.pt --method gradcam

The ``YOLO`` object is given to the CAM as it is: the CAM runs the network inside it (the raw
head output before NMS), never its predictor, and never calls its ``train``. The target layers are
the three neck outputs the ``Detect`` head reads
(:func:`pytorch_grad_cam.detection.layers.detector_target_layers`); each box the model
predicts (ultralytics' own thresholds: score 0.25, NMS IoU 0.7) is explained by its own target.
One image per box is written, ``yolo_{method}_box{k}.png``.

Without ``--weights`` the model is built from ``yolov8n.yaml`` with random weights (offline): no box
reaches the 0.25 score then, so the highest-scoring ones are explained. ultralytics is AGPL-3.0; it
is needed by this example only (``pip install ultralytics``), never by the library.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_rgb  # noqa: E402
from _detection_common import (  # noqa: E402
    check_arguments,
    explain_each_box,
    labels_of,
    parser,
    save_box_maps,
    top_boxes,
)

from pytorch_grad_cam.detection.layers import detector_target_layers  # noqa: E402
from pytorch_grad_cam.detection.outputs import model_detections  # noqa: E402
from pytorch_grad_cam.registry import get_method  # noqa: E402

RANDOM_WEIGHTS_NOTE = (
    "note: yolov8n.yaml has random weights (offline), so its boxes are meaningless; for real ones pass "
    "--weights yolov8n.pt (a local file, or a name ultralytics downloads where you have a network)"
)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    args = parser(
        __doc__.split("\n\n")[0],
        640,
        "a YOLO .pt file (default: yolov8n.yaml, random)",
        "yolo_example_output",
    ).parse_args(argv)
    check_arguments(args)
    if args.image_size % 32:
        raise SystemExit(f"--image-size must be a multiple of 32 (YOLO's stride); got {args.image_size}")
    try:
        from ultralytics import YOLO
    except ImportError as error:
        raise SystemExit("this example needs ultralytics: pip install ultralytics") from error
    torch.manual_seed(0)
    model = YOLO(args.weights or "yolov8n.yaml", verbose=False)
    if args.weights is None:
        print(RANDOM_WEIGHTS_NOTE)
    rgb = load_rgb(args.image_path, args.image_size)
    input_tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)  # YOLO reads [0, 1] RGB
    (found,) = model_detections(model, input_tensor, score_threshold=args.score_threshold)
    if found.boxes.shape[0] == 0:
        print("no box scores above the threshold; explaining the highest-scoring ones")
        (found,) = model_detections(model, input_tensor, score_threshold=0.0, max_detections=args.max_boxes)
    found = top_boxes(found, args.max_boxes)
    names = labels_of(model.model.names)
    print(f"explaining {found.boxes.shape[0]} boxes: {[names(int(k)) for k in found.labels]}")
    target_layers, reshape_transform = detector_target_layers(model)
    cam = get_method(args.method)(model, target_layers, reshape_transform=reshape_transform)
    maps = explain_each_box(cam, input_tensor, found)
    written = save_box_maps(rgb, maps, found, names, args.output_dir, f"yolo_{args.method}")
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()
