"""The application: the ``cam.py`` / ``pytorch-grad-cam`` commands (photo, method loop, detection,
segmentation, dataset), argument checks, model families and loading. The library never imports this
package."""
