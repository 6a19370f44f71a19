"""Tutorial: explain an embedding model against concepts (similarity to a concept's embedding).

    python docs/tutorials/embeddings.py            # about half a minute on a CPU
    python docs/tutorials/embeddings.py --quick    # seconds, an undertrained model (the tests)

An embedding model maps an image to a vector; "which pixels make this image similar to concept
C?" is explained with ``SimilarityToConceptTarget``: the cosine similarity of the image's embedding
to C's. Here the embedding is the pooled features of the small CNN of ``shapes.py``, trained in
seconds to tell the generated shapes apart, and each concept is the mean embedding of 256 pictures
of one shape. Writes ``embeddings_concepts.png``: pictures holding two class shapes, and the map
of each shape's concept, which falls on that shape.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # noqa: E402
from pictures import arguments, energy_in_box, grid, record, tile, to_rgb  # noqa: E402

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import SimilarityToConceptTarget  # noqa: E402


class Embedder(nn.Module):
    """The trained classifier without its last layer: a ``(B, 32)`` embedding per image."""

    def __init__(self, net: shapes.ShapesNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    torch.set_num_threads(1)
    embedder = Embedder(shapes.trained_classifier(40 if args.quick else 400)).eval()

    images, labels, _, _ = shapes.batch(128 if args.quick else 1024, torch.Generator().manual_seed(3))
    with torch.no_grad():
        embeddings = embedder(images)
    concepts = [embeddings[labels == k].mean(0) for k in range(shapes.CLASSES)]  # (32,) each

    generator = torch.Generator().manual_seed(11)
    rows, row_titles, right = [], [], []
    cam = GradCAM(embedder, [embedder.net.features[-1]])
    for _ in range(4):
        first, second = torch.randperm(shapes.CLASSES, generator=generator)[:2].tolist()
        places = torch.randperm(16, generator=generator)[:3].tolist()
        image, _ = shapes.draw([first, second, shapes.CLASSES + 1], places, generator)
        boxes = [[(p // 4) * 8, (p % 4) * 8, (p // 4) * 8 + 8, (p % 4) * 8 + 8] for p in places[:2]]
        rgb = to_rgb(image)
        row = [tile(rgb)]
        for kind, box, other in ((first, boxes[0], boxes[1]), (second, boxes[1], boxes[0])):
            grayscale = cam(image[None], [SimilarityToConceptTarget(concepts[kind])])[0]
            right.append(energy_in_box(grayscale, box) > energy_in_box(grayscale, other))
            row.append(tile(show_cam_on_image(rgb, grayscale, use_rgb=True), box=box))
        rows.append(row)
        row_titles.append(f"{shapes.CLASS_NAMES[first]} + {shapes.CLASS_NAMES[second]}")
    print(
        f"the concept's own shape holds more of its map than the other shape in {np.mean(right):.0%} "
        "of the maps"
    )
    written = grid(
        rows,
        ["image", "1st shape's concept", "2nd shape's concept"],
        args.out / "embeddings_concepts.png",
        row_titles=row_titles,
    )
    record([written], "embeddings", args.quick)


if __name__ == "__main__":
    main()
