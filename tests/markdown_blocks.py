"""The code blocks of README.md and of every page under docs/, as the tests that run them read them.

A fenced block's language says what happens to it:

- ``bash``: commands, each run (or checked as a real invocation) by a test (see ``tests/test_readme.py``);
- ``python``: run, in order, page by page (``tests/test_readme.py``); a block that is only a
  snippet include of a tutorial script (``--8<-- "docs/tutorials/x.py"``) shows the script, which
  ``tests/test_tutorials.py`` runs;
- ``text``: output shown, not code;
- anything else (``py``) must follow a ``<!-- not run: why -->`` line, and is counted: such blocks
  are kept few.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
SNIPPET = re.compile(r'^--8<-- "([^"]+)"\s*$')


def markdown_files() -> list[Path]:
    """README.md, examples/README.md and every page under docs/ (not the tables tutorials write)."""
    pages = sorted(path for path in (ROOT / "docs").rglob("*.md") if "img" not in path.parts)
    return [ROOT / "README.md", ROOT / "examples" / "README.md", *pages]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    body: str
    not_run: str | None  # the reason, for a block marked not to run

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def snippet(self) -> str | None:
        """The included file, for a block that is only a snippet include."""
        match = SNIPPET.match(self.body.strip())
        return match.group(1) if match else None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one file, in order (fences at the start of a line or indented in a list)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.group(1), opening.group(2)
        body, end = [], index + 1
        while end < len(lines) and lines[end].strip() != "```":
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end])
            end += 1
        previous = lines[index - 1] if index > 0 else ""
        marker = NOT_RUN.search(previous)
        found.append(
            Block(path, index + 1, language, "\n".join(body) + "\n", marker.group(1) if marker else None)
        )
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks(path)]


def commands(path: Path | None = None) -> list[str]:
    """The commands of the ``bash`` blocks (continuation lines joined, comments dropped), in order."""
    chosen = blocks(path) if path is not None else all_blocks()
    found = []
    for block in chosen:
        if block.language != "bash":
            continue
        for line in block.body.replace("\\\n", " ").splitlines():
            if line.strip() and not line.strip().startswith("#"):
                found.append(line.strip())
    return found
