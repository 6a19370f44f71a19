"""The evaluation's report.html in a real browser (headless Chromium): its plots render, its images load."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SmallConvNet
from PIL import Image

from pytorch_grad_cam.batch import run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Five photos (one named with HTML), boxes from a CSV, randomisation and the two worst images."""
    root = tmp_path_factory.mktemp("evaluation")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    names = ["a.png", "b.png", "c.png", "x<b>&.png", "d.png"]
    lines = ["image,x1,y1,x2,y2,label"]
    for i, name in enumerate(names):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)).save(photos / name)
        lines.append(f"{name},{4 + i},6,{30 + i},28,obj")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    model = SmallConvNet().eval()
    run(model, {"early": model.block1, "late": model.block2}, photos, "gradcam", output_dir=root / "out",
        evaluate={"annotations": str(root / "boxes.csv"), "steps": 2, "worst": 2}, batch_size=4,
        num_workers=0, image_size=32, progress=False)  # fmt: skip
    return root / "out" / "report.html"


def test_report_plots_render_and_images_load(browser, report):
    page = browser.new_page()
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(report.as_uri())
    svgs = page.eval_on_selector_all(
        "svg", "els => els.map(e => [e.getBoundingClientRect().width, e.querySelectorAll('*').length])"
    )
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('alt'), e.naturalWidth])")
    text = page.inner_text("body")
    bold_names = page.eval_on_selector_all("b", "els => els.map(e => e.textContent)")
    page.close()
    # a leaderboard interval plot and the randomisation curves per layer, each drawn with marks
    assert len(svgs) >= 2 and all(width > 0 and marks > 1 for width, marks in svgs), svgs
    # the worst images with their maps: every picture decoded by the browser
    assert images and all(width > 0 for _, width in images), images
    # the HTML name is text, never markup: no <b> element opened by it
    assert all(name != "&.png" for name in bold_names), bold_names
    for method in ("gradcam@early", "gradcam@late", "random", "centre", "edges"):
        assert method in text, method
    assert not failed, failed
