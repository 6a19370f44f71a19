"""mkdocs hook: the API reference pages, generated from the package's module tree at build time.

Every importable module of ``pytorch_grad_cam`` whose name has no part starting with ``_`` gets a
page ``reference/<dotted name>.md`` holding one mkdocstrings directive, and ``reference/index.md``
lists them with each module's first docstring line. Nothing is listed by hand, so a module that is
added, moved or removed changes the reference on the next build.
"""

from __future__ import annotations

import importlib
import pkgutil

from mkdocs.structure.files import File, Files

PACKAGE = "pytorch_grad_cam"


def public_modules() -> list[str]:
    """The dotted names of the package's public modules, sorted (the package itself first)."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=PACKAGE + "."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        names.append(info.name)
    return sorted(names, key=lambda name: (name != PACKAGE, name))


def _first_line(name: str) -> str:
    doc = importlib.import_module(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _index(names: list[str]) -> str:
    lines = [
        "# API reference",
        "",
        "Every public module of the package, generated from its docstrings at build time "
        "(the module list is read from the installed package, not written by hand). "
        "The top-level `pytorch_grad_cam` page lists what `from pytorch_grad_cam import ...` gives.",
        "",
        "| Module | What it holds |",
        "| --- | --- |",
    ]
    for name in names:
        summary = _first_line(name).replace("|", "\\|")
        lines.append(f"| [`{name}`]({name}.md) | {summary} |")
    return "\n".join(lines) + "\n"


def _page(name: str) -> str:
    return f"::: {name}\n"


def on_files(files: Files, config) -> Files:
    names = public_modules()
    files.append(File.generated(config, "reference/index.md", content=_index(names)))
    for name in names:
        files.append(File.generated(config, f"reference/{name}.md", content=_page(name)))
    return files
