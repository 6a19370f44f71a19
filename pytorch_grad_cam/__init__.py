"""Class activation maps for PyTorch: which pixels made the model pick a class."""

from pytorch_grad_cam.ablation_cam import AblationCAM
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerFasterRCNN, AblationLayerVit
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.attention.attention_gradcam import AttentionGradCAM
from pytorch_grad_cam.attention.legrad import LeGrad
from pytorch_grad_cam.attention.rollout import AttentionRollout, GradientRollout
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.class_activation_map import CAM
from pytorch_grad_cam.eigen_cam import EigenCAM
from pytorch_grad_cam.eigen_grad_cam import EigenGradCAM
from pytorch_grad_cam.feature_factorization.deep_feature_factorization import (
    DeepFeatureFactorization,
    run_dff_on_image,
)
from pytorch_grad_cam.fem import FEM
from pytorch_grad_cam.finer_cam import FinerCAM
from pytorch_grad_cam.fullgrad_cam import FullGrad
from pytorch_grad_cam.grad_cam import GradCAM
from pytorch_grad_cam.grad_cam_elementwise import GradCAMElementWise
from pytorch_grad_cam.grad_cam_plusplus import GradCAMPlusPlus
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
from pytorch_grad_cam.hirescam import HiResCAM
from pytorch_grad_cam.iscam import ISCAM
from pytorch_grad_cam.kpca_cam import KPCA_CAM
from pytorch_grad_cam.layer_cam import LayerCAM
from pytorch_grad_cam.random_cam import RandomCAM
from pytorch_grad_cam.refine_cam import RefineCAM
from pytorch_grad_cam.score_cam import ScoreCAM
from pytorch_grad_cam.seg_eigen_cam import SegEigenCAM
from pytorch_grad_cam.sess import SESS
from pytorch_grad_cam.shapley_cam import ShapleyCAM
from pytorch_grad_cam.smooth_grad_cam_plusplus import SmoothGradCAMPlusPlus
from pytorch_grad_cam.sscam import SSCAM
from pytorch_grad_cam.xgrad_cam import XGradCAM

__version__ = "0.1.0"

__all__ = [
    "AblationCAM",
    "AblationLayer",
    "AblationLayerFasterRCNN",
    "AblationLayerVit",
    "ActivationsAndGradients",
    "AttentionGradCAM",
    "AttentionRollout",
    "BaseCAM",
    "CAM",
    "DeepFeatureFactorization",
    "EigenCAM",
    "EigenGradCAM",
    "FEM",
    "FinerCAM",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GradientRollout",
    "GuidedBackpropReLUModel",
    "HiResCAM",
    "ISCAM",
    "KPCA_CAM",
    "LayerCAM",
    "LeGrad",
    "RandomCAM",
    "RefineCAM",
    "SESS",
    "SSCAM",
    "ScoreCAM",
    "SegEigenCAM",
    "ShapleyCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
    "run_dff_on_image",
]
