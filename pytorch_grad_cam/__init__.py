"""Class activation maps for PyTorch: which pixels made the model pick a class."""

from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.eigen_cam import EigenCAM
from pytorch_grad_cam.eigen_grad_cam import EigenGradCAM
from pytorch_grad_cam.grad_cam import GradCAM
from pytorch_grad_cam.grad_cam_plusplus import GradCAMPlusPlus
from pytorch_grad_cam.layer_cam import LayerCAM
from pytorch_grad_cam.xgrad_cam import XGradCAM

__version__ = "0.1.0"

__all__ = [
    "ActivationsAndGradients",
    "BaseCAM",
    "EigenCAM",
    "EigenGradCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "XGradCAM",
]
