"""Train/eval flags of a user's model, set and restored without calling its own ``train``/``eval``."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def model_in_eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the body with every submodule in eval mode, then restore each module's own flag.

    Neither the model's nor any submodule's ``train``/``eval`` is called (see :func:`set_eval_flags`).
    """
    modes = [(module, module.training) for module in model.modules()]
    set_eval_flags(model)
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
