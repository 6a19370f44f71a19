"""Temporary: :func:`~pytorch_grad_cam.detection.layers.detector_target_layers` at its earlier path.

Kept only until the layer search moves into its own package (issue 19, item 4); no release had it.
"""

from pytorch_grad_cam.detection.layers import DetectorLayers, detector_target_layers

__all__ = ["DetectorLayers", "detector_target_layers"]
