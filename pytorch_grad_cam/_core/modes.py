"""Train/eval flags of a user's model, set and restored without calling its own ``train``/``eval``."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

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
