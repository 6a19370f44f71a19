"""Class activation maps of a photo from the command line; see ``python cam.py --help``.

Example:
    python cam.py --image-path examples/chelsea.png --method gradcam

The same command is installed as ``pytorch-grad-cam``; the code is :mod:`pytorch_grad_cam.cli.console`
(one photo: :mod:`pytorch_grad_cam.cli.photo`; ``--image-dir``: :mod:`pytorch_grad_cam.batch`).
"""

import sys

from pytorch_grad_cam.cli.console import main

if __name__ == "__main__":
    sys.exit(main())
