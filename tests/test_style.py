"""The repository stays ruff clean (rules and formatting in ruff.toml), with the pinned ruff."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pinned_ruff() -> str:
    """The version ruff.toml requires (``required-version = "==X"``)."""
    text = (ROOT / "ruff.toml").read_text(encoding="utf-8")
    found = re.search(r'^required-version\s*=\s*"==([0-9.]+)"', text, re.MULTILINE)
    assert found, 'ruff.toml must pin the ruff the tests run: required-version = "==X.Y.Z"'
    return found.group(1)


def installed_ruff() -> str | None:
    result = subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True, text=True)
    found = re.fullmatch(r"ruff ([0-9.]+)\s*", result.stdout)
    return found.group(1) if result.returncode == 0 and found else None


def test_the_pin_is_the_same_in_ruff_toml_and_setup_py():
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert f'"ruff=={pinned_ruff()}"' in setup


def test_the_pinned_ruff_is_installed():
    expected, installed = pinned_ruff(), installed_ruff()
    assert installed == expected, (
        f"the style checks are pinned to ruff {expected} (ruff.toml, setup.py's test extra); "
        f"this environment has {installed or 'no ruff'}: pip install ruff=={expected}"
    )


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    # ruff itself refuses to run when it is not ruff.toml's required-version
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
