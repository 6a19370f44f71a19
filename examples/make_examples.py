"""Rebuild the example photos of this folder from the public-domain images scikit-image ships.

Run from the repository root: ``python examples/make_examples.py`` (needs scikit-image).
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).parent
#: The square crops (left, top, right, bottom) of the two photos that make ``cat_and_cup.png``.
CAT_CROP = (75, 0, 375, 300)
CUP_CROP = (110, 0, 510, 400)
#: Side of each half of ``cat_and_cup.png``: the command line's input size.
HALF = 224


def main(output_dir: Path = HERE) -> None:
    """Write the three photos into ``output_dir``."""
    chelsea = Image.fromarray(data.chelsea())  # 451 x 300, a tabby cat
    coffee = Image.fromarray(data.coffee())  # 600 x 400, an espresso cup on a saucer
    chelsea.save(output_dir / "chelsea.png", optimize=True)
    coffee.resize((450, 300), Image.LANCZOS).save(output_dir / "coffee.png", optimize=True)
    halves = [
        np.asarray(photo.crop(box).resize((HALF, HALF), Image.LANCZOS))
        for photo, box in ((chelsea, CAT_CROP), (coffee, CUP_CROP))
    ]
    Image.fromarray(np.concatenate(halves, axis=1)).save(output_dir / "cat_and_cup.png", optimize=True)


if __name__ == "__main__":
    main()
