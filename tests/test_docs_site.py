"""The documentation site: it builds strictly, its API reference has every public name, and in a real
browser (headless Chromium) every internal link, anchor and image of every page resolves."""

from __future__ import annotations

import functools
import http.server
import importlib
import inspect
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))
from reference import public_modules  # noqa: E402  (the hook that generates the reference pages)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``mkdocs build --strict`` into a temporary folder: (exit status, output, folder, seconds)."""
    folder = tmp_path_factory.mktemp("site")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr, folder, time.perf_counter() - start


def test_the_site_builds_strictly(site):
    code, output, folder, _ = site
    assert code == 0, output
    assert "WARNING" not in output, output
    assert (folder / "index.html").is_file() and (folder / "reference" / "index.html").is_file()


def _inventory(folder: Path) -> set[str]:
    """The object names in mkdocstrings' ``objects.inv`` (Sphinx's inventory format, version 2)."""
    data = (folder / "objects.inv").read_bytes()
    body = data.split(b"\n", 4)[4]  # four header lines, then zlib
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines() if line}


def _public_names(module_name: str) -> list[str]:
    """The classes and functions a module defines (not imports) whose names have no leading ``_``,
    and the names of its ``__all__`` (what a package exports from its modules)."""
    module = importlib.import_module(module_name)
    defined = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module_name
    ]
    return sorted(set(defined) | set(getattr(module, "__all__", ())))


def test_the_api_reference_has_every_public_module_and_name(site):
    code, output, folder, _ = site
    assert code == 0, output
    names = _inventory(folder)
    modules = public_modules()
    assert "pytorch_grad_cam.batch.runner" in modules and "pytorch_grad_cam.utils.model_targets" in modules
    missing = []
    for module in modules:
        if module not in names:
            missing.append(module)
        missing += [f"{module}.{name}" for name in _public_names(module) if f"{module}.{name}" not in names]
    assert not missing, f"public names without a reference entry: {missing}"
    assert (folder / "reference" / "pytorch_grad_cam.utils.model_targets" / "index.html").is_file()


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on localhost (its links are directory URLs, which file:// cannot follow)."""
    code, output, folder, _ = site
    assert code == 0, output
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines on the test output
        pass


def _served_path(name: str) -> str:
    """Where the page ``docs/<name>.md`` is served: ``x.md`` at ``x/``, ``x/index.md`` at ``x/``."""
    if name == "index":
        return ""
    return name[: -len("index")] if name.endswith("/index") else name + "/"


#: Per page: its URL, the ids on it, its internal links (absolute), its images (src, natural width).
PAGE_FACTS = """() => ({
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  images: Array.from(document.images).map(i => [i.currentSrc || i.src, i.naturalWidth]),
  resources: Array.from(document.querySelectorAll('link[href], script[src], img[src]'))
    .map(e => e.href || e.src).filter(u => !u.startsWith(location.origin)),
})"""


def test_every_page_link_anchor_and_image_resolves_in_chromium(browser, served):
    """Crawl the site from its home page: every internal page loads (HTTP 200), every image on it
    has a natural width, nothing is loaded from another host, and every internal link's target and
    anchor exist."""
    # the theme's scripts (search, navigation) are not what is checked: off, each page loads faster
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    queue, seen, facts, problems = [served], set(), {}, []
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            problems.append(f"{url}: HTTP {response.status if response else 'no response'}")
            continue
        found = page.evaluate(PAGE_FACTS)
        facts[url] = found
        problems += [f"{url}: image {src} did not load" for src, width in found["images"] if width == 0]
        problems += [
            f"{url}: loads {resource} from another host (not offline)" for resource in found["resources"]
        ]
        for link in found["links"]:
            target, _ = urldefrag(link)
            if urlparse(target).netloc == urlparse(served).netloc and not target.endswith(
                (".py", ".png", ".jpg")
            ):
                queue.append(target)
    context.close()
    for url, found in facts.items():
        for link in found["links"]:
            target, anchor = urldefrag(link)
            internal = urlparse(target).netloc == urlparse(served).netloc and target in facts
            if anchor and internal and anchor not in facts[target]["ids"]:
                problems.append(f"{url}: link to {link}, no such anchor")
    assert not problems, "\n".join(problems)
    written = [
        path.relative_to(ROOT / "docs").with_suffix("").as_posix()
        for path in (ROOT / "docs").rglob("*.md")
        if "img" not in path.parts
    ]
    pages = {urljoin(served, _served_path(name)) for name in written}
    unreached = sorted(pages - set(facts))
    assert not unreached, f"pages under docs/ that no link reaches: {unreached}"
    assert len(facts) > 100  # every page, the API reference's included
