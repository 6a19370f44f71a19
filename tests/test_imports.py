"""The package's import graph has no circle: every module of pytorch_grad_cam, every import in it.

The graph is read from the source with ``ast``, so an import inside a function counts as much as one
at the top of a file (a deferred import is still a circle: the two modules still need each other).
An import of ``a.b.c`` is an edge to the module ``a.b.c`` (or, for ``from a.b import name`` where
``name`` is not a module, to ``a.b``); the parent packages it runs first are left out, as every
module of a package would otherwise be in a circle with a package ``__init__`` that re-exports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "pytorch_grad_cam"


def module_files(root: Path) -> dict[str, Path]:
    """Every module under the folder ``root``: dotted name -> file (``a/b/__init__.py`` is ``a.b``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its file (functions included)."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(node, name, is_package)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (depth-first search, in sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph(PACKAGE_ROOT)
    assert "pytorch_grad_cam.batch.runner" in graph and "pytorch_grad_cam._core.outputs" in graph
    assert "pytorch_grad_cam.cli.models" in graph["pytorch_grad_cam.cli.photo"]  # the graph sees the imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_library_never_imports_the_application():
    """``cli/`` (the commands) imports the library; no library module imports ``cli/``, directly or
    through another. ``batch/__main__.py`` is the one exception: ``python -m pytorch_grad_cam.batch``
    runs the dataset command, a program nothing imports."""
    graph = import_graph(PACKAGE_ROOT)
    application = {name for name in graph if name.startswith("pytorch_grad_cam.cli")}
    assert "pytorch_grad_cam.cli.dataset" in application and "pytorch_grad_cam.cli.photo" in application
    library = set(graph) - application - {"pytorch_grad_cam.batch.__main__"}
    offenders = {name: sorted(reaches(graph, name) & application) for name in sorted(library)}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_reaches_follows_imports_through_other_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert reaches(graph, "d") == {"a", "b", "c"} and reaches(graph, "c") == set()


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_deferred_import_closes_a_circle(tmp_path):
    """The circle cli <-> batch of before: one side imports at the top, the other inside a function."""
    root = _package(
        tmp_path,
        {
            "cli.py": "def main():\n    from pkg.batch import main as batch_main\n    return batch_main()\n",
            "batch/__init__.py": "from pkg.batch.command import main\n",
            "batch/command.py": "from pkg import cli\n\ndef main():\n    return cli\n",
            "other.py": "import pkg.cli\n",
        },
    )
    graph = import_graph(root)
    assert graph["pkg.cli"] == {"pkg.batch"} and graph["pkg.batch"] == {"pkg.batch.command"}
    assert find_cycle(graph) == ["pkg.batch", "pkg.batch.command", "pkg.cli", "pkg.batch"]


def test_relative_imports_and_submodules_named_in_from_imports(tmp_path):
    root = _package(
        tmp_path,
        {
            "a.py": "from . import b\nfrom .sub import thing\n",
            "b.py": "",
            "sub/__init__.py": "thing = 1\nfrom .inner import x\n",
            "sub/inner.py": "from ..a import nothing\nx = 2\n",
        },
    )
    graph = import_graph(root)
    assert graph["pkg.a"] == {"pkg.b", "pkg.sub"}
    assert graph["pkg.sub"] == {"pkg.sub.inner"} and graph["pkg.sub.inner"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.inner", "pkg.a"]
    (root / "sub" / "inner.py").write_text("x = 2\n")
    assert find_cycle(import_graph(root)) is None
