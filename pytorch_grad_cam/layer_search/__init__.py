"""The automatic target layer (the rule: docs/layer-rule.md). One public function,
:func:`find_target_layer`, answers for the CAMs and for the user alike, known detectors included.

The package, one file a job: :mod:`~.search` (the rule, applied), :mod:`~.record` (the hooked
forward that reads every module's layout), :mod:`~.score` (the score whose gradient decides),
:mod:`~.cache` (choices per model, input shape and targets), :mod:`~.layouts` (token grids,
channels-last maps) and :mod:`~.choice` (the answer, :class:`LayerChoice`).
"""

from pytorch_grad_cam.layer_search.choice import LayerChoice
from pytorch_grad_cam.layer_search.search import cached_choice, clear_cache, find_target_layer

__all__ = ["LayerChoice", "cached_choice", "clear_cache", "find_target_layer"]
