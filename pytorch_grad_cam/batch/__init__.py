"""CAMs for whole datasets: a resumable batch runner that scales out with ``torchrun`` (the package).

One process::

    python -m pytorch_grad_cam.batch --image-dir photos/ --method gradcam --output-dir cams/

Several processes (GPUs, or CPU processes), on one node or many (torchrun's rendezvous flags)::

    torchrun --nproc-per-node 4 -m pytorch_grad_cam.batch --image-dir photos/ --output-dir cams/

From Python: :func:`run` (``from pytorch_grad_cam.batch import run``). What it writes into ``output_dir``:

- ``<name>.npy`` for every image ``<name>`` (its path under the image folder, so the input tree
  is mirrored): the CAM, float16 in [0, 1], at the image's own size or ``cam_size``;
- ``<name>.overlay.jpg`` with ``save_overlay``: the CAM over the image;
- ``manifest.jsonl``: one JSON object a line, per image in input order (see :func:`run`);
- ``index.html``, ``index-2.html``, ... with ``html``, and their thumbnails under ``thumbnails/``;
- ``run.json``: the settings, so that a re-run with other settings is refused instead of mixed in.

**Work unit and determinism.** The images are cut, in input order, into batches of
``batch_size``. A batch is the unit of work: it always holds the same images, whichever process
computes it, and it is skipped on a re-run only when every one of its images is complete. With
several processes, process ``r`` of ``W`` computes the pending batches ``r, r + W, r + 2W, ...``
(a disjoint, deterministic split without padding), so every CAM is computed from exactly the same
batch as in a one-process run and the files are identical (on the CPU with the same number of
threads per process; on GPUs up to cuDNN's own nondeterminism).

**Resuming.** Every file is written under a temporary name (unique per process and write) and
renamed when complete; the manifest record of a batch is appended after all its files exist. A run
killed at any point, or stopped by a full disk, and started again with the same arguments
recomputes only the batches that had not completed, and ends with one record per image. A file
is taken as done only when it is whole (a ``.npy`` holding all its data, a JPEG ending with its end
marker, a regular file and not a link); anything else is recomputed.

**Faults.** An image that makes the model or the CAM raise, or gives a NaN or inf output or map, is
recorded as bad with the reason, and the other images of its batch are computed one by one. A file
that disappears during the run is recorded as gone (the next run drops it, and adds files that
appeared). Nothing is written or removed through a symbolic link planted in the output folder: an
image whose folder is a link out of it is recorded as not written; a link in the place of the lock,
the manifest shards' folder or an output file is replaced, never followed.

**One run at a time.** A run locks its output folder (``.lock``, holding its pid and host; process 0
holds it for all processes of a ``torchrun`` job); a second run into the folder is refused with one
line naming the first. The lock of a killed run is recovered with a note.

**Processes.** Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) a
gloo process group coordinates the processes (it carries only the work list and the counts, so it
works alike with GPUs and CPUs); each process uses ``cuda:LOCAL_RANK`` when CUDA is available, else
the CPU, and appends to its own manifest shard. Process 0 merges the shards into
``manifest.jsonl`` after all have finished.

The package, one file a job: :mod:`~pytorch_grad_cam.batch.sources` (folders and datasets to
samples), :mod:`~pytorch_grad_cam.batch.world` (the process group, the device),
:mod:`~pytorch_grad_cam.batch.plan` (the image list, settings and resume),
:mod:`~pytorch_grad_cam.batch.lock` (one run at a time),
:mod:`~pytorch_grad_cam.batch.manifest` (the output folder's layout, merging the shards),
:mod:`~pytorch_grad_cam.batch.arguments` (:func:`run`'s argument checks),
:mod:`~pytorch_grad_cam.batch.compute` (one batch's CAMs), :mod:`~pytorch_grad_cam.batch.detection`
(``task="detection"``: one CAM per predicted box), :mod:`~pytorch_grad_cam.batch.segmentation`
(``task="segmentation"``: one CAM per predicted class), :mod:`~pytorch_grad_cam.batch.writer`
(one image's files and record), :mod:`~pytorch_grad_cam.batch.shard` (each batch's records appended
to the process's shard, counted), :mod:`~pytorch_grad_cam.batch.finish` (the counts summed, the
manifest merged, the summary), :mod:`~pytorch_grad_cam.batch.runner` (:func:`run`),
:mod:`~pytorch_grad_cam.batch.files` (image decoding, atomic writes) and
:mod:`~pytorch_grad_cam.batch.gallery` (the HTML pages). The command line is the application's
(:mod:`pytorch_grad_cam.cli.dataset`); this package never imports it.
``run(..., evaluate=...)`` scores methods instead (docs/audit.md): :mod:`~pytorch_grad_cam.batch.evaluate`,
:mod:`~pytorch_grad_cam.batch.evaluate_inputs` and :mod:`~pytorch_grad_cam.batch.evaluation_report`
(its ``--evaluate`` options: :mod:`pytorch_grad_cam.cli.evaluate`).
"""

from pytorch_grad_cam.batch.files import find_images
from pytorch_grad_cam.batch.manifest import MANIFEST_NAME, SETTINGS_NAME, SHARD_DIR, THUMBNAIL_DIR
from pytorch_grad_cam.batch.runner import run
from pytorch_grad_cam.batch.sources import THUMBNAIL_SIZE
from pytorch_grad_cam.batch.summary import BatchSummary
from pytorch_grad_cam.errors import ConfigError, UsageError

__all__ = [
    "MANIFEST_NAME",
    "SETTINGS_NAME",
    "SHARD_DIR",
    "THUMBNAIL_DIR",
    "THUMBNAIL_SIZE",
    "BatchSummary",
    "ConfigError",
    "UsageError",
    "find_images",
    "run",
]
