"""Train/eval flags of a user's model, set and restored without calling its own ``train``/``eval``; and
the CAM call's own precision (autocast off)."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
from torch import nn


def set_eval_flags(model: nn.Module) -> None:
    """Put ``model`` and every submodule in eval mode by their ``training`` flags alone.

    ``nn.Module.eval()`` calls ``self.train(False)``, and a wrapper may override ``train`` with
    something else entirely (ultralytics' ``Model.train`` starts a training run). Setting the flag
    of each module is what ``nn.Module.train`` itself does, without dispatching to any override.
    """
    for module in model.modules():
        module.training = False


#: Per model (by id, alive while entered): how many calls are inside :func:`model_in_eval_mode` and
#: the flags the first of them saved. Calls from several threads on one model share one save.
_ENTERED: dict[int, tuple[int, list[tuple[nn.Module, bool]]]] = {}
_ENTERED_LOCK = threading.Lock()


@contextlib.contextmanager
def model_in_eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the body with every submodule in eval mode, then restore each module's own flag.

    Neither the model's nor any submodule's ``train``/``eval`` is called (see :func:`set_eval_flags`).
    Calls that overlap on one model (threads) save the flags once, on the first entry, and restore
    them on the last exit: a later call never saves the eval flags an earlier one set.
    """
    key = id(model)
    with _ENTERED_LOCK:
        count, modes = _ENTERED.get(key, (0, []))
        if count == 0:
            modes = [(module, module.training) for module in model.modules()]
            set_eval_flags(model)
        _ENTERED[key] = (count + 1, modes)
    try:
        yield
    finally:
        with _ENTERED_LOCK:
            count, modes = _ENTERED[key]
            if count == 1:
                del _ENTERED[key]
                for module, training in modes:
                    module.training = training
            else:
                _ENTERED[key] = (count - 1, modes)


def without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off for ``device``'s type inside the CAM call (restored after it).

    Under a caller's ``torch.autocast`` (CPU bfloat16, CUDA float16) the model would run, and be
    differentiated, in 8 or 11 significant bits: a map off by several percent (FullGrad's by 15% in
    bfloat16). The CAM is the float model's, the same as outside autocast.
    """
    available = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))
    if not available(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)
