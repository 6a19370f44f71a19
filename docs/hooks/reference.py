"""mkdocs hook: the API reference pages, generated from the package's module tree at build time.

Every importable module of ``pytorch_grad_cam`` whose name has no part starting with ``_`` gets a
page ``reference/<dotted name>.md`` holding one mkdocstrings directive, and ``reference/index.md``
lists them with each module's first docstring line. Nothing is listed by hand, so a module that is
added, moved or removed changes the reference on the next build. A page under ``docs/`` that the
``nav`` of mkdocs.yml does not list is added at its end, under "More", so a page written by
someone who did not edit the nav is still reachable.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

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


def _listed(nav) -> set[str]:
    """Every page path named in a nav (nested lists of ``{title: path}``, ``{title: [...]}``, paths)."""
    found = set()
    for entry in nav or []:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            found |= _listed(value) if isinstance(value, list) else {value}
    return found


def on_config(config):
    docs = Path(config["docs_dir"])
    listed = _listed(config["nav"])
    extra = sorted(
        path.relative_to(docs).as_posix()
        for path in docs.rglob("*.md")
        if "img" not in path.parts and "hooks" not in path.parts
    )
    extra = [page for page in extra if page not in listed]
    if config["nav"] is not None and extra:
        config["nav"].append({"More": extra})
    return config


def on_files(files: Files, config) -> Files:
    names = public_modules()
    files.append(File.generated(config, "reference/index.md", content=_index(names)))
    for name in names:
        files.append(File.generated(config, f"reference/{name}.md", content=_page(name)))
    return files
