"""Rebuild the example photos of this folder from the public-domain images scikit-image ships.

Run from the repository root: ``python examples/make_examples.py`` (needs scikit-image).
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).parent
#: Height of the two halves of the side-by-side photo: the command line's input size.
PAIR_HEIGHT = 224


def _to_height(image: Image.Image, height: int) -> Image.Image:
    width = round(image.width * height / image.height)
    return image.resize((width, height), Image.LANCZOS)


def main() -> None:
    chelsea = Image.fromarray(data.chelsea())  # 451 x 300, a tabby cat
    coffee = Image.fromarray(data.coffee())  # 600 x 400, an espresso cup on a saucer
    chelsea.save(HERE / "chelsea.png", optimize=True)
    coffee.resize((450, 300), Image.LANCZOS).save(HERE / "coffee.png", optimize=True)
    left, right = _to_height(chelsea, PAIR_HEIGHT), _to_height(coffee, PAIR_HEIGHT)
    pair = np.concatenate([np.asarray(left), np.asarray(right)], axis=1)
    Image.fromarray(pair).save(HERE / "cat_and_cup.png", optimize=True)


if __name__ == "__main__":
    main()
