"""The registry: names, lookup, and the README table it generates."""

from pathlib import Path

import pytest

import pytorch_grad_cam
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.registry import METHODS, get_method, method_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_method_table_is_generated_from_the_registry():
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- methods:start -->\n", "\n<!-- methods:end -->"
    table = text[text.index(start) + len(start) : text.index(end)]
    assert table == method_table(), (
        "README.md's method table is stale: replace it with the output of "
        "python -c 'from pytorch_grad_cam.registry import method_table; print(method_table())'"
    )


def test_every_method_is_exported_and_a_basecam():
    for name, info in METHODS.items():
        assert name == name.lower()
        assert issubclass(info.cls, BaseCAM)
        assert getattr(pytorch_grad_cam, info.cls.__name__) is info.cls
        assert info.cls.__doc__ and "http" in info.cls.__doc__, (
            f"{info.cls.__name__} docstring needs its paper link"
        )


def test_get_method():
    assert get_method("GradCAM++") is pytorch_grad_cam.GradCAMPlusPlus
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of: gradcam"):
        get_method("nope")
