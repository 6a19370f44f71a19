"""The one registry of CAM methods: it drives ``cam.py --method``, the README table and the tests."""

from __future__ import annotations

import dataclasses
from typing import Mapping

from pytorch_grad_cam.ablation_cam import AblationCAM
from pytorch_grad_cam.attention.attention_gradcam import AttentionGradCAM
from pytorch_grad_cam.attention.legrad import LeGrad
from pytorch_grad_cam.attention.rollout import AttentionRollout, GradientRollout
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.class_activation_map import CAM
from pytorch_grad_cam.eigen_cam import EigenCAM
from pytorch_grad_cam.eigen_grad_cam import EigenGradCAM
from pytorch_grad_cam.fem import FEM
from pytorch_grad_cam.finer_cam import FinerCAM
from pytorch_grad_cam.fullgrad_cam import FullGrad
from pytorch_grad_cam.grad_cam import GradCAM
from pytorch_grad_cam.grad_cam_elementwise import GradCAMElementWise
from pytorch_grad_cam.grad_cam_plusplus import GradCAMPlusPlus
from pytorch_grad_cam.hirescam import HiResCAM
from pytorch_grad_cam.iscam import ISCAM
from pytorch_grad_cam.kpca_cam import KPCA_CAM
from pytorch_grad_cam.layer_cam import LayerCAM
from pytorch_grad_cam.random_cam import RandomCAM
from pytorch_grad_cam.score_cam import ScoreCAM
from pytorch_grad_cam.seg_eigen_cam import SegEigenCAM
from pytorch_grad_cam.shapley_cam import ShapleyCAM
from pytorch_grad_cam.smooth_grad_cam_plusplus import SmoothGradCAMPlusPlus
from pytorch_grad_cam.sscam import SSCAM
from pytorch_grad_cam.xgrad_cam import XGradCAM


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What the registry knows of a method.

    Attributes:
        name: the ``cam.py --method`` name.
        cls: the class.
        summary: what it does, in one line (the README table).
        paper: the reference, as ``[title](url)``.
    """

    name: str
    cls: type[BaseCAM]
    summary: str
    paper: str

    @property
    def uses_gradients(self) -> bool:
        return self.cls.uses_gradients


_ENTRIES = (
    MethodInfo(
        "gradcam",
        GradCAM,
        "Weight the 2D activations by the average gradient",
        "[Grad-CAM](https://arxiv.org/abs/1610.02391)",
    ),
    MethodInfo(
        "gradcam++",
        GradCAMPlusPlus,
        "Like GradCAM but uses second order gradients",
        "[Grad-CAM++](https://arxiv.org/abs/1710.11063)",
    ),
    MethodInfo(
        "xgradcam",
        XGradCAM,
        "Like GradCAM but scale the gradients by the normalized activations",
        "[XGrad-CAM](https://arxiv.org/abs/2008.02312)",
    ),
    MethodInfo(
        "layercam",
        LayerCAM,
        "Spatially weight the activations by positive gradients; works better in lower layers",
        "[LayerCAM](http://mftp.mmcheng.net/Papers/21TIP_LayerCAM.pdf)",
    ),
    MethodInfo(
        "eigencam",
        EigenCAM,
        "First principal component of the 2D activations (no class discrimination)",
        "[Eigen-CAM](https://arxiv.org/abs/2008.00299)",
    ),
    MethodInfo(
        "eigengradcam",
        EigenGradCAM,
        "Like EigenCAM but class discriminative: first principal component of activations x gradients",
        "[Eigen-CAM](https://arxiv.org/abs/2008.00299)",
    ),
    MethodInfo(
        "hirescam",
        HiResCAM,
        "Like GradCAM but multiply the activations by the gradients elementwise; provably faithful "
        "for some models",
        "[HiResCAM](https://arxiv.org/abs/2011.08891)",
    ),
    MethodInfo(
        "gradcamelementwise",
        GradCAMElementWise,
        "Like HiResCAM but with a ReLU on each gradient x activation product before the channel sum",
        "[HiResCAM](https://arxiv.org/abs/2011.08891) (variant)",
    ),
    MethodInfo(
        "fullgrad",
        FullGrad,
        "Input-gradient x input plus the bias-gradients of every conv and batch-norm layer "
        "(target layers not used)",
        "[FullGrad](https://arxiv.org/abs/1905.00780)",
    ),
    MethodInfo(
        "kpcacam",
        KPCA_CAM,
        "Like EigenCAM but with kernel PCA instead of PCA (no class discrimination)",
        "[KPCA-CAM](https://arxiv.org/abs/2410.00267)",
    ),
    MethodInfo(
        "fem",
        FEM,
        "Weight each channel by how often it exceeds its mean + k std (no gradients, no class)",
        "[FEM](https://hal.science/hal-02963298/document)",
    ),
    MethodInfo(
        "segeigencam",
        SegEigenCAM,
        "First principal component of abs(gradients) x activations, sign-corrected; for segmentation",
        "[Seg-Eigen-CAM](https://doi.org/10.3390/app15137562)",
    ),
    MethodInfo(
        "shapleycam",
        ShapleyCAM,
        "Weight the activations by the gradient corrected with a Hessian-vector product",
        "[ShapleyCAM](https://arxiv.org/abs/2501.06261)",
    ),
    MethodInfo(
        "finercam",
        FinerCAM,
        "GradCAM of the class score minus the scores of the most similar classes",
        "[Finer-CAM](https://arxiv.org/abs/2501.11309)",
    ),
    MethodInfo(
        "scorecam",
        ScoreCAM,
        "Perturb the image by the scaled activations and measure how the output drops",
        "[Score-CAM](https://arxiv.org/abs/1910.01279)",
    ),
    MethodInfo(
        "ablationcam",
        AblationCAM,
        "Zero out activations and measure how the output drops (the network before the layer runs "
        "once per image)",
        "[Ablation-CAM](https://openaccess.thecvf.com/content_WACV_2020/papers/"
        "Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_"
        "WACV_2020_paper.pdf)",
    ),
    MethodInfo(
        "sscam",
        SSCAM,
        "ScoreCAM with Gaussian noise on the masks, the scores averaged over samples (torchcam's SS-CAM)",
        "[SS-CAM](https://arxiv.org/abs/2006.14255)",
    ),
    MethodInfo(
        "iscam",
        ISCAM,
        "ScoreCAM with each mask scored at increasing input scales, the scores averaged (torchcam's IS-CAM)",
        "[IS-CAM](https://arxiv.org/abs/2010.03023)",
    ),
    MethodInfo(
        "smoothgradcam++",
        SmoothGradCAMPlusPlus,
        "GradCAM++ with derivatives averaged over noisy copies of the input (torchcam's definition)",
        "[Smooth Grad-CAM++](https://arxiv.org/abs/1908.01224)",
    ),
    MethodInfo(
        "cam",
        CAM,
        "Weight the activations by the final linear layer's weights of the class (torchcam's definition)",
        "[CAM](https://arxiv.org/abs/1512.04150)",
    ),
    MethodInfo(
        "legrad",
        LeGrad,
        "ViT: gradient of each block's own class score w.r.t. its attention, positive part, "
        "averaged over heads, queries and blocks (no target layer)",
        "[LeGrad](https://arxiv.org/abs/2404.03214)",
    ),
    MethodInfo(
        "attentionrollout",
        AttentionRollout,
        "ViT: product of the layers' residual-aware attention, read at the class token "
        "(no gradients, no class)",
        "[Attention rollout](https://arxiv.org/abs/2005.00928)",
    ),
    MethodInfo(
        "gradientrollout",
        GradientRollout,
        "ViT: attention rollout of relu(mean over heads of gradient x attention), class specific",
        "[vit-explain](https://github.com/jacobgil/vit-explain) (fixed)",
    ),
    MethodInfo(
        "attentiongradcam",
        AttentionGradCAM,
        "ViT: relevance R <- R + mean_heads(relu(grad x attention)) @ R over the layers",
        "[Chefer et al. 2021](https://arxiv.org/abs/2103.15679)",
    ),
    MethodInfo(
        "randomcam",
        RandomCAM,
        "Weight the activations by random numbers in [-1, 1]: a baseline for the metrics",
        "baseline (no paper)",
    ),
)

#: ``cam.py --method`` name -> method.
METHODS: dict[str, MethodInfo] = {entry.name: entry for entry in _ENTRIES}

#: The methods that explain a detector's box in one gradient or one forward (no per-channel passes):
#: ``cam.py --task detection``'s and the dataset runner's detection task.
DETECTION_METHODS = (
    "gradcam",
    "gradcam++",
    "xgradcam",
    "layercam",
    "hirescam",
    "gradcamelementwise",
    "eigengradcam",
    "eigencam",
)

#: The methods that explain a segmenter's classes: the detection ones and SegEigenCAM (made for it):
#: ``cam.py --task segmentation``'s and the dataset runner's segmentation task.
SEGMENTATION_METHODS = (*DETECTION_METHODS, "segeigencam")

#: What ``cam.py --task`` and the dataset runner's ``task`` explain: a class, each box, each class's mask.
TASKS = ("classification", "detection", "segmentation")


def get_method(name: str) -> type[BaseCAM]:
    """The class registered under ``name`` (case-insensitive).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    key = name.lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[key].cls


def method_table(costs: Mapping[str, float] | None = None) -> str:
    """The README's method table, in Markdown.

    Args:
        costs: measured cost per method name, in forward-equivalents per image (the method's
            time over the model's own no_grad forward); a method without one shows ``?``.
    """
    costs = costs or {}
    lines = [
        "| `--method` | Class | What it does | Gradients | Cost (x forward) | Paper |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for entry in METHODS.values():
        gradients = "yes" if entry.uses_gradients else "no"
        cost = f"{costs[entry.name]:.1f}" if entry.name in costs else "?"
        cells = [f"`{entry.name}`", f"`{entry.cls.__name__}`", entry.summary, gradients, cost, entry.paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def costs_in_table(table: str) -> dict[str, float]:
    """The costs written in a table made by :func:`method_table` (``?`` cells are left out)."""
    costs = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[4] != "?":
            costs[cells[0].strip("`")] = float(cells[4])
    return costs
