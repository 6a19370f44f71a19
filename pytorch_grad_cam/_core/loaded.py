"""Classes of optional packages, looked up only where the user's program already imported them."""

from __future__ import annotations

import sys


def loaded_class(module_name: str, class_name: str) -> type | None:
    """The class ``class_name`` of module ``module_name`` if that module is imported, else None.

    Nothing is imported here: a model can only be an instance of a class whose module is loaded,
    so checking ``isinstance`` against the result never costs an import (of ultralytics, timm,
    transformers or torchvision's detection models) and never needs the package installed.
    """
    module = sys.modules.get(module_name)
    value = None if module is None else vars(module).get(class_name)
    return value if isinstance(value, type) else None
