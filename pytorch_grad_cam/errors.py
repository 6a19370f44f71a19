"""The library's own exception and warning types."""

from __future__ import annotations


class NotApplicableError(ValueError):
    """A method cannot explain this model or layer by its definition (not a bug, not a bad argument).

    For example ``CAM`` on a layer that does not feed the final linear layer, or an attention method
    on a network without attention. ``cam.py --method all`` skips a method that raises this, and
    reports every other exception as a failure.
    """


class UsageError(Exception):
    """A mistake in a command line or in the files it names: the commands report it as one line and
    exit with status 2 (a missing file, an unknown model, layer or class, a device that is not there)."""


class ConfigError(ValueError):
    """Arguments of a dataset run that do not fit together or do not fit the output folder's earlier run."""


class BlankMapWarning(UserWarning):
    """A CAM came out blank or constant for a reason the library can name."""
