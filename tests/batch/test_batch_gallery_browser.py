"""The dataset runner's HTML gallery in a real browser (headless Chromium): it pages, every image loads.

The gallery (``pytorch_grad_cam/batch/gallery.py``) is static: no script, so no filter or sort
controls to try; its controls are the page links, which are followed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch
from PIL import Image

from pytorch_grad_cam.batch import run


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, small_cnn_for_gallery):
    """A run over 7 small photos and one broken file, 3 images per page: 3 pages."""
    root = tmp_path_factory.mktemp("gallery")
    photos, cams = root / "photos", root / "cams"
    (photos / "sub dir").mkdir(parents=True)  # a space: the links must be escaped
    generator = torch.Generator().manual_seed(0)
    for index in range(7):
        pixels = (torch.rand(40, 48, 3, generator=generator) * 255).to(torch.uint8).numpy()
        folder = photos / ("sub dir" if index % 2 else "")
        Image.fromarray(pixels).save(folder / f"photo #{index}.png")
    (photos / "broken.jpg").write_bytes(b"not a picture")
    model = small_cnn_for_gallery
    run(model, [model.block2], photos, "gradcam", output_dir=cams, batch_size=4, num_workers=0,
        image_size=32, save_overlay=True, html=True, per_page=3, progress=False)  # fmt: skip
    return cams


@pytest.fixture(scope="module")
def small_cnn_for_gallery():
    from conftest import SmallConvNet

    return SmallConvNet(num_classes=3).eval()


def test_gallery_pages_through_and_every_image_loads(browser, gallery):
    records = [json.loads(line) for line in (gallery / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 8
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto((gallery / "index.html").as_uri())
    seen_names, visited, loaded = [], [], 0
    while True:
        visited.append(page.url.rsplit("/", 1)[-1])
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])"
        )
        assert images, f"no images on {visited[-1]}"
        broken = [src for src, width in images if width == 0]
        assert not broken, f"images that did not load on {visited[-1]}: {broken}"
        loaded += len(images)
        seen_names += page.eval_on_selector_all("figcaption b", "els => els.map(e => e.textContent)")
        following = page.query_selector("a[rel=next]")
        if following is None:
            break
        following.click()
        page.wait_for_load_state("load")
    page.close()
    assert visited == ["index.html", "index-2.html", "index-3.html"]
    assert seen_names == [record["name"] for record in records]  # every image once, in manifest order
    assert loaded == 2 * 7  # a thumbnail and an overlay per good photo; the bad file has none
    assert not failed, failed


def test_gallery_links_to_each_cam_and_overlay(browser, gallery):
    page = browser.new_page()
    page.goto((gallery / "index-2.html").as_uri())
    hrefs = page.eval_on_selector_all("figure a", "els => els.map(e => e.href)")
    page.close()
    assert hrefs
    for href in hrefs:  # file:// URLs of files that exist
        assert href.startswith("file://")
        assert Path(unquote(urlparse(href).path)).is_file(), href
