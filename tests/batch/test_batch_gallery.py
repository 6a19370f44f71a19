"""pytorch_grad_cam.batch.gallery: the HTML pages of a run, and paginating them."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import batch_helpers as H
import pytest
from PIL import Image

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch.gallery import write_gallery


def _parsed_pages(output: Path) -> dict[str, dict]:
    class Page(HTMLParser):
        VOID = {"img", "meta", "br", "link"}

        def __init__(self) -> None:
            super().__init__()
            self.links: list[str] = []
            self.stack: list[str] = []
            self.bold: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag, attrs):
            attributes = dict(attrs)
            for key in ("src", "href"):
                if key in attributes:
                    self.links.append(unquote(attributes[key]))
            if tag not in self.VOID:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

        def handle_data(self, data):
            if self.stack and self.stack[-1] == "b":
                self.bold.append(data)
            self.text.append(data)

    pages = {}
    for path in sorted(output.glob("index*.html")):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        page.close()
        assert page.stack == [], path
        pages[path.name] = {"links": page.links, "names": page.bold, "text": "".join(page.text)}
    return pages


def test_html_gallery_pages_link_existing_files_and_show_each_image_once(single_run):
    output, _ = single_run
    pages = _parsed_pages(output)
    assert sorted(pages) == ["index-2.html", "index-3.html", "index.html"]  # 40 images, 16 a page
    shown = [name for page in ("index.html", "index-2.html", "index-3.html") for name in pages[page]["names"]]
    records = H.manifest(output)
    assert shown == [record["name"] for record in records]
    for page in pages.values():
        assert page["links"], "a page without images"
        for link in page["links"]:
            assert (output / link).is_file(), link
    assert {"index.html", "index-3.html"} <= set(pages["index-2.html"]["links"])  # previous, next
    assert "index-2.html" in pages["index.html"]["links"] and "index-2.html" in pages["index-3.html"]["links"]
    text = "".join(page["text"] for page in pages.values())
    for reason in H.BAD.values():
        assert reason in text
    ok = [record for record in records if record["status"] == "ok"]
    with Image.open(output / ok[0]["thumbnail"]) as thumbnail:
        assert max(thumbnail.size) == B.THUMBNAIL_SIZE


def test_write_gallery_paginates_and_removes_stale_pages(tmp_path):
    records = [
        {"name": f"x{i}.png", "status": "error", "error": f"reason <{i}>"} if i % 3 == 0 else _ok_record(i)
        for i in range(7)
    ]
    pages = write_gallery(tmp_path, records, per_page=3)
    assert [page.name for page in pages] == ["index.html", "index-2.html", "index-3.html"]
    assert "reason &lt;3&gt;" in (tmp_path / "index-2.html").read_text()
    assert [page.name for page in write_gallery(tmp_path, records[:2], per_page=3)] == ["index.html"]
    assert sorted(path.name for path in tmp_path.glob("index*.html")) == ["index.html"]
    with pytest.raises(ValueError, match="per_page"):
        write_gallery(tmp_path, records, per_page=0)


def _ok_record(i: int) -> dict:
    return {
        "name": f"x{i}.png",
        "status": "ok",
        "predicted": 2,
        "predicted_name": "tabby",
        "probability": 0.5,
        "target": 2,
        "cam": f"x{i}.png.npy",
        "thumbnail": f"thumbnails/x{i}.png.jpg",
        "overlay_thumbnail": f"thumbnails/x{i}.png.overlay.jpg",
        "overlay": None,
    }
