"""``python -m pytorch_grad_cam.batch``: the dataset runner's command line (:mod:`.batch.command`)."""

import sys

from pytorch_grad_cam.cli.dataset import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m pytorch_grad_cam.batch"))
