"""The 1.5.x module of AblationCAM over several target layers.

:class:`pytorch_grad_cam.AblationCAM` takes several target layers itself; this module keeps the
old import path working (``from pytorch_grad_cam.ablation_cam_multilayer import AblationCAM``).
"""

from pytorch_grad_cam.ablation_cam import AblationCAM

__all__ = ["AblationCAM"]
