"""Detectors: targets, output readers, default layers and the fast paths (torchvision, YOLO, DETR).

BaseCAM reaches this package only through the seam (:mod:`pytorch_grad_cam._core.seam`), and only for
a call that needs it: a classifier's call imports nothing from here.
"""
