"""Clips given frames first, ``(B, T, C, H, W)`` (HuggingFace's VideoMAE, TimeSformer, ViViT): read as
``(B, C, T, H, W)`` for the call, so that their maps are ``(B, T, H, W)``, one per frame.

The library reads a 5-D input as ``(B, C, D, H, W)``, torchvision's video layout. A model that takes
its frames first would have its maps laid along the colour axis. Such a model is recognised by its
input convolution: the first convolution among its modules takes as many channels as the input's
third axis holds, and not as many as its second (a clip whose frames and channels are as many is
read channels first). The call then runs on :class:`FramesFirst`, the model seen as a function of
the ``(B, C, T, H, W)`` clip, as a model with several inputs runs on
:class:`~pytorch_grad_cam._core.inputs.OneInputVaried`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from pytorch_grad_cam.errors import NotApplicableError

#: A :class:`~pytorch_grad_cam.base_cam.BaseCAM` (not imported here: base_cam imports this module).
BaseCAM = Any
#: The refusals raised again with the user's module names (their message is their only argument).
_RENAMED = (ValueError, NotApplicableError)


class FramesFirst(nn.Module):
    """The user's model as a function of a ``(B, C, T, H, W)`` clip: ``FramesFirst(model)(x)`` is
    ``model(x.transpose(1, 2))``. The model is held as a child and not changed."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x.transpose(1, 2))


def reads_frames_first(model: nn.Module, input_tensor: torch.Tensor) -> bool:
    """Whether a 5-D ``input_tensor`` is ``(B, T, C, H, W)`` for ``model`` (see the module docstring)."""
    if input_tensor.dim() != 5 or input_tensor.shape[1] == input_tensor.shape[2]:
        return False
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return conv is not None and conv.in_channels == input_tensor.shape[2]


def _users_names(text: str, model: nn.Module) -> str:
    """``text`` with the wrapper's names of ``model``'s modules (``model.<name>``) as ``<name>``."""
    for name, _ in model.named_children():
        text = text.replace(f"model.{name}", name)
    return text


def in_users_names(error: ValueError, model: nn.Module, given: torch.Tensor | None = None) -> ValueError:
    """A refusal raised on :class:`FramesFirst` (``model`` wrapped) again, naming ``model``'s modules
    as the user does (and the ``given`` clip's shape, not its channels-first reading's); ``error``
    itself when it names none of them or is no refusal of the library."""
    text = _users_names(str(error), model)
    if given is not None:
        read = tuple(given.transpose(1, 2).shape)
        text = text.replace(f"{read}", f"{tuple(given.shape)} (read as {read}, frames first)")
    if text == str(error) or type(error) not in _RENAMED:
        return error
    return type(error)(text)


def frames_first_maps(cam: BaseCAM, input_tensor: torch.Tensor, call: Callable[[torch.Tensor], Any]) -> Any:
    """``call`` (the CAM's one-input call) on the clip read channels first, the CAM's model being
    :class:`FramesFirst` meanwhile (one per CAM and model, so that the layer search's cache holds
    between calls); names of the chosen layer and of the findings are the user's model's."""
    wrapper = cam._frames_first
    if wrapper is None or wrapper.model is not cam.model:
        wrapper = cam._frames_first = FramesFirst(cam.model)
    model = cam.model
    cam.model = wrapper
    try:
        maps = call(input_tensor.transpose(1, 2))
    except ValueError as error:  # a refusal names the user's modules, not the wrapper's
        renamed = in_users_names(error, model, input_tensor)
        if renamed is error:
            raise
        raise renamed from error
    finally:
        cam.model = model
    if cam.layer_choice is not None:
        cam.layer_choice = cam.layer_choice.in_wrapped_model()
    cam.diagnostics = [f.in_wrapped_model() for f in cam.diagnostics]
    return maps
