"""Rebuild the README's pictures in this folder from the README's own cam.py commands.

Run from the repository root: ``python docs/make_images.py``. ``gallery.jpg`` is the ``cam_grid.jpg`` of
``--method all`` on ``examples/chelsea.png``; ``cat_and_cup.jpg`` stacks the GradCAMs of "tiger cat"
(top) and "espresso" (bottom) on ``examples/cat_and_cup.png``.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pytorch_grad_cam.cli.photo import GRID_NAME, main

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"


def run(*args: str) -> None:
    code = main(list(args))  # prints its report, with each method's time
    if code != 0:
        raise SystemExit(f"cam.py {' '.join(args)} failed")


def main_images() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run(
            "--image-path", str(EXAMPLES / "chelsea.png"), "--method", "all", "--output-dir", str(out / "all")
        )
        shutil.copyfile(out / "all" / GRID_NAME, HERE / "gallery.jpg")
        pair = str(EXAMPLES / "cat_and_cup.png")
        run("--image-path", pair, "--category", "tiger cat", "--output-dir", str(out / "cat"))
        run("--image-path", pair, "--category", "espresso", "--output-dir", str(out / "cup"))
        stacked = np.concatenate(
            [np.asarray(Image.open(out / name / "gradcam_cam.jpg")) for name in ("cat", "cup")], axis=0
        )
        Image.fromarray(stacked).save(HERE / "cat_and_cup.jpg", quality=85)


if __name__ == "__main__":
    main_images()
