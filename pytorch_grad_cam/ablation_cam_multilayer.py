"""The 1.5.x module of AblationCAM over several target layers.

:class:`pytorch_grad_cam.AblationCAM` takes several target layers itself; this module keeps the
old import path working (``from pytorch_grad_cam.ablation_cam_multilayer import AblationCAM``), with
``replace_layer_recursive`` (:mod:`pytorch_grad_cam.utils.find_layers`). 1.5.x's module-swapping
``AblationLayer(layer, reshape_transform, indices)`` of this module is not kept: nothing is
swapped into the model any more (see :mod:`pytorch_grad_cam.ablation_layer`).
"""

from pytorch_grad_cam.ablation_cam import AblationCAM
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive

__all__ = ["AblationCAM", "replace_layer_recursive"]
