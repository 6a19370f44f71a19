"""Tutorial: CAMs for every photo of a folder, with a manifest and an HTML gallery.

    python docs/tutorials/datasets.py            # about half a minute on a CPU
    python docs/tutorials/datasets.py --quick    # three photos (the tests)

Writes a folder of scikit-image photos (and one broken file), runs the dataset runner
(``pytorch_grad_cam.batch.run``) over it with EfficientNet-Lite0's real ImageNet weights, then
reads what it wrote: the manifest (one JSON line per image), the CAMs (``.npy``) and the gallery
(``index.html``). Writes ``datasets_overlays.jpg``, the overlays the run saved, labelled with the
manifest's predicted class.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classifier import CATEGORIES, load_model  # noqa: E402
from pictures import arguments, grid, record  # noqa: E402

from pytorch_grad_cam.batch import run  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.manual_seed(0)
    model = load_model()
    names = PHOTOS[:3] if args.quick else PHOTOS
    with tempfile.TemporaryDirectory() as scratch:
        photos, cams = Path(scratch) / "photos", Path(scratch) / "cams"
        for index, name in enumerate(names):  # a tree: the output mirrors it
            folder = photos / ("animals" if name == "chelsea" else "other")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{index}_{name}.jpg", quality=90)
        (photos / "other" / "broken.jpg").write_bytes(b"not a picture")  # recorded and skipped

        summary = run(
            model, [model._blocks[-1]], photos, "gradcam", output_dir=cams, batch_size=4, num_workers=0,
            mean=[0.5] * 3, std=[0.5] * 3,  # EfficientNet-Lite0's normalisation
            save_overlay=True, html=True, class_names=CATEGORIES, progress=False,
        )  # fmt: skip
        print(summary.line())

        records = [json.loads(line) for line in (cams / "manifest.jsonl").read_text().splitlines()]
        tiles, titles = [], []
        for entry in records:
            if entry["status"] != "ok":
                print(f"{entry['name']}: skipped, {entry['error']}")
                continue
            cam = np.load(cams / entry["cam"])  # float16 in [0, 1], the photo's own size
            print(f"{entry['name']}: {entry['predicted_name']} ({entry['probability']:.0%}), CAM {cam.shape}")
            overlay = Image.open(cams / entry["overlay"]).convert("RGB").resize((200, 200))
            tiles.append(overlay)
            titles.append(entry["predicted_name"][:22])
        print(f"gallery: {cams / 'index.html'} ({len(list(cams.glob('index*.html')))} page)")
        written = grid([tiles], titles, args.out / "datasets_overlays.jpg")
    record([written], "datasets", args.quick)


if __name__ == "__main__":
    main()
