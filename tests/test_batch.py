"""The batch runner: a folder of small images with bad files, one process and torchrun, kill and resume."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam import batch as B
from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.batch_html import write_gallery
from pytorch_grad_cam.utils.image import IMAGENET_MEAN, IMAGENET_STD
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(__file__).resolve().parent / "batch_models.py"
_SPEC = importlib.util.spec_from_file_location("batch_models", MODELS)
batch_models = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(batch_models)

IMAGE_SIZE = 32
BATCH = 4

#: (relative name, kind) of the generated folder: 40 image files.
GOOD = (
    [f"a/{i}.jpg" for i in range(6)]
    + [f"a/b/{i}.webp" for i in range(4)]
    + ["a/UPPER.JPG", "a/UPPER2.JPEG"]
    + [f"img{i:02d}.png" for i in range(10)]
    + [f"c/{i}.bmp" for i in range(3)]
    + [f"c/{i}.tif" for i in range(3)]
)
CONVERTED = {
    "c/cmyk.jpg": "CMYK",
    "c/gray16.png": "I;16",
    "c/gray.png": "L",
    "c/palette.png": "P",
    "c/palette_transparent.png": "P",
    "c/rgba.png": "RGBA",
    "c/la.png": "LA",
}
BAD = {
    "bad/empty.jpg": "empty file (0 bytes)",
    "bad/truncated.jpg": "unreadable image",
    "bad/truncated.png": "unreadable image",
    "bad/not_an_image.png": "not an image file",
    "bad/garbage.webp": "not an image file",
}


def _picture(rng: np.random.Generator) -> np.ndarray:
    """A small RGB picture: a plain background with a square of another colour somewhere."""
    height, width = (int(v) for v in rng.integers(24, 49, size=2))
    picture = np.empty((height, width, 3), dtype=np.uint8)
    picture[:] = rng.integers(0, 256, size=3)
    size = int(rng.integers(6, 14))
    top, left = int(rng.integers(0, height - size)), int(rng.integers(0, width - size))
    picture[top : top + size, left : left + size] = rng.integers(0, 256, size=3)
    return picture


def make_photo_dir(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in GOOD:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".png": "PNG"}
        Image.fromarray(_picture(rng)).save(path, format=fmt[path.suffix.lower()])
    converted = root / "c"
    Image.fromarray(_picture(rng)).convert("CMYK").save(converted / "cmyk.jpg")
    Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)).save(
        converted / "gray16.png"
    )
    Image.fromarray(_picture(rng)).convert("L").save(converted / "gray.png")
    Image.fromarray(_picture(rng)).convert("P").save(converted / "palette.png")
    palette = Image.fromarray(_picture(rng)).convert("P")
    palette.info["transparency"] = 0
    palette.save(converted / "palette_transparent.png", transparency=0)
    picture = _picture(rng)
    alpha = np.full(picture.shape[:2], 255, dtype=np.uint8)
    alpha[:, : picture.shape[1] // 2] = 0
    Image.fromarray(np.dstack([picture, alpha]), mode="RGBA").save(converted / "rgba.png")
    Image.fromarray(np.dstack([picture[..., 0], alpha]), mode="LA").save(converted / "la.png")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    full = root / "a" / "0.jpg"
    (bad / "truncated.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    png = root / "img00.png"
    (bad / "truncated.png").write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    (bad / "not_an_image.png").write_text("this is a text file\n")
    (bad / "garbage.webp").write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)))
    (root / "notes.txt").write_text("not an image\n")
    Image.fromarray(_picture(rng)).save(root / ".hidden.png")
    return root


def command(photos: Path, output_dir: Path, model: str = "tiny_cnn", layer: str = "features") -> list[str]:
    """The runner's arguments shared by the command-line tests."""
    return [
        "--image-dir",
        str(photos),
        "--output-dir",
        str(output_dir),
        "--model",
        f"{MODELS}:{model}",
        "--target-layer",
        layer,
        "--batch-size",
        str(BATCH),
        "--image-size",
        str(IMAGE_SIZE),
        "--save-overlay",
        "--html",
        "--per-page",
        "16",
    ]


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **extra)
    return env


def run_cli(
    arguments: list[str], *, launcher: list[str] | None = None, **extra: str
) -> subprocess.CompletedProcess:
    prefix = launcher or [sys.executable]
    return subprocess.run(
        [*prefix, str(ROOT / "cam.py"), *arguments],  # cam.py hands --image-dir to the batch runner
        cwd=ROOT,
        env=environment(**extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative POSIX path -> bytes)."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / B.MANIFEST_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_dir(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def single_run(photos, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The reference: the command line in one process (one DataLoader worker)."""
    output = tmp_path_factory.mktemp("single") / "cams"
    result = run_cli([*command(photos, output), "--num-workers", "1"])
    assert result.returncode == 0, result.stderr
    return output, result


# -- inputs ---------------------------------------------------------------------------------------


def test_find_images_is_recursive_sorted_and_skips_hidden_other_files_and_the_output_folder(tmp_path):
    for name in ["b.PNG", "a/x.jpeg", "a/.hidden.jpg", ".cache/y.png", "out/z.png", "notes.txt", "a/t.tiff"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert B.find_images(tmp_path, exclude=tmp_path / "out") == ["a/t.tiff", "a/x.jpeg", "b.PNG"]
    assert "out/z.png" in B.find_images(tmp_path)


def test_load_rgb_converts_modes_with_the_right_values(tmp_path):
    from pytorch_grad_cam.batch_io import load_rgb

    gray16 = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    image, size, mode = load_rgb(tmp_path / "g16.png")
    assert mode.startswith("I") and size == (2, 2)
    np.testing.assert_array_equal(np.asarray(image)[..., 0], [[0, 100], [200, 255]])
    np.testing.assert_array_equal(np.asarray(image)[..., 1], np.asarray(image)[..., 2])

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[1, :] = (0, 0, 0, 128)  # half: halfway to white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image, _, mode = load_rgb(tmp_path / "rgba.png")
    assert mode == "RGBA"
    pixels = np.asarray(image).astype(int)
    assert pixels[0, 0].tolist() == [10, 20, 30] and pixels[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(pixels[1] - 127) <= 1)

    Image.fromarray(np.array([[0, 255]], dtype=np.uint8), mode="L").save(tmp_path / "l.png")
    image, _, mode = load_rgb(tmp_path / "l.png")
    assert mode == "L" and np.asarray(image).tolist() == [[[0, 0, 0], [255, 255, 255]]]

    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")  # pure red in CMYK
    image, size, mode = load_rgb(tmp_path / "cmyk.tif")
    assert mode == "CMYK" and size == (3, 4) and np.asarray(image)[0, 0].tolist() == [255, 0, 0]

    Image.new("RGB", (4, 3), (1, 2, 3)).save(tmp_path / "rgb.png")
    image, size, mode = load_rgb(tmp_path / "rgb.png")
    assert mode is None and size == (3, 4) and np.asarray(image)[2, 3].tolist() == [1, 2, 3]


def test_load_rgb_applies_exif_orientation_and_drafts_large_jpegs(tmp_path):
    from pytorch_grad_cam.batch_io import load_rgb

    picture = np.zeros((20, 40, 3), dtype=np.uint8)
    picture[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(picture).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image, size, _ = load_rgb(tmp_path / "rotated.jpg")
    assert size == (40, 20) and image.size == (20, 40)
    upright = np.asarray(image).mean(axis=(1, 2))
    assert upright[:20].mean() > 200 and upright[20:].mean() < 50  # the white half is now on top

    Image.fromarray(np.full((400, 800, 3), 90, dtype=np.uint8)).save(tmp_path / "big.jpg")
    image, size, _ = load_rgb(tmp_path / "big.jpg", draft_size=100)
    assert size == (400, 800) and min(image.size) >= 100 and image.size[0] < 800


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"hello", "not an image file"), ("half-jpeg", "unreadable image")],
)
def test_load_rgb_reports_bad_files(tmp_path, content, reason):
    from pytorch_grad_cam.batch_io import BadImage, load_rgb

    if content == "half-jpeg":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / "full.jpg"
        )
        content = (tmp_path / "full.jpg").read_bytes()[:600]
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(BadImage, match=reason):
        load_rgb(tmp_path / "x.jpg")


# -- one process, torchrun, the manifest ------------------------------------------------------------


def test_single_process_writes_every_output_and_one_manifest_line_per_image(photos, single_run):
    output, result = single_run
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    names = B.find_images(photos)
    assert len(names) == 40 and sorted(GOOD + list(CONVERTED) + list(BAD)) == names
    records = manifest(output)
    assert [record["name"] for record in records] == names
    assert result.stdout.startswith("40 images: 35 CAMs written, 0 already done, 5 bad files;")
    for record in records:
        assert record["method"] == "gradcam" and record["image"] == str((photos / record["name"]).resolve())
        if record["status"] != "ok":
            continue
        with Image.open(photos / record["name"]) as image:
            width, height = image.size
        cam = np.load(output / record["cam"])
        assert cam.dtype == np.float16 and cam.shape == (height, width) == tuple(record["cam_size"])
        assert cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0.5
        assert record["target"] == record["predicted"] and 0 < record["probability"] <= 1
        with Image.open(output / record["overlay"]) as overlay:
            assert overlay.size == (width, height) and overlay.mode == "RGB"
    assert not (output / B.SHARD_DIR).exists()
    assert json.loads((output / B.SETTINGS_NAME).read_text())["method"] == "gradcam"


def test_saved_cams_equal_gradcam_on_the_same_batch(photos, single_run):
    output, _ = single_run
    records = manifest(output)[:BATCH]  # the first batch: four RGB JPEGs
    pixels = []
    for record in records:
        with Image.open(photos / record["name"]) as image:
            resized = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
        mean, std = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)  # float32 arithmetic throughout
        pixels.append((np.asarray(resized, dtype=np.float32) / np.float32(255) - mean) / std)
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    model = batch_models.tiny_cnn()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        maps = GradCAM(model, [model.features])(x)
        with torch.no_grad():
            probabilities = torch.softmax(model(x), dim=-1)
    finally:
        torch.set_num_threads(threads)
    for row, record in enumerate(records):
        expected = CF.resize_cams(torch.from_numpy(maps[row : row + 1]), record["cam_size"])[0].numpy()
        np.testing.assert_array_equal(np.load(output / record["cam"]), expected.astype(np.float16))
        assert record["predicted"] == int(probabilities[row].argmax())
        assert record["probability"] == round(float(probabilities[row].max()), 6)


def test_bad_files_are_recorded_with_reasons_and_odd_modes_converted(single_run):
    output, _ = single_run
    records = {record["name"]: record for record in manifest(output)}
    for name, reason in BAD.items():
        assert records[name]["status"] == "error" and reason in records[name]["error"], records[name]
        assert "cam" not in records[name]
    for name, mode in CONVERTED.items():
        assert records[name]["status"] == "ok" and records[name]["converted_from"] == mode
        assert (output / records[name]["cam"]).is_file()
    assert all(records[name]["converted_from"] is None for name in GOOD)


def test_torchrun_two_cpu_processes_give_the_same_files_and_one_merged_manifest(photos, single_run, tmp_path):
    reference, _ = single_run
    output = tmp_path / "cams"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = run_cli([*command(photos, output), "--num-workers", "1"], launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("40 images: 35 CAMs written, 0 already done, 5 bad files;") == 1  # rank 0 only
    assert "on 2 processes" in result.stdout
    assert tree(output) == tree(reference)  # CAMs, overlays, thumbnails, gallery, manifest: byte for byte


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
    records = manifest(output)
    assert shown == [record["name"] for record in records]
    for page in pages.values():
        assert page["links"], "a page without images"
        for link in page["links"]:
            assert (output / link).is_file(), link
    assert {"index.html", "index-3.html"} <= set(pages["index-2.html"]["links"])  # previous, next
    assert "index-2.html" in pages["index.html"]["links"] and "index-2.html" in pages["index-3.html"]["links"]
    text = "".join(page["text"] for page in pages.values())
    for reason in BAD.values():
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


# -- resuming ---------------------------------------------------------------------------------------


def test_a_killed_run_restarted_completes_every_image_once(photos, single_run, tmp_path):
    reference, _ = single_run
    output = tmp_path / "cams"
    marker = tmp_path / "stalled"
    arguments = command(photos, output, model="stalling_cnn", layer="inner.features")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytorch_grad_cam.batch", *arguments, "--num-workers", "0"],
        cwd=ROOT,
        env=environment(BATCH_TEST_STALL_AFTER="3", BATCH_TEST_STALL_MARKER=str(marker)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never reached its fourth batch"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    shard = output / B.SHARD_DIR / "rank-00000.jsonl"
    lines = shard.read_text().splitlines()
    done = {json.loads(line)["name"] for line in lines}
    assert 0 < len(list(output.rglob("*.npy"))) < 35 and len(done) < 40
    # the process died between writing a batch's files and its records: drop the last record, and
    # leave a half-written temporary file where a pending image's CAM goes
    shard.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    pending = next(name for name in B.find_images(photos) if name not in done and name.startswith("img"))
    (output / f".{pending}.npy.tmp").write_bytes(b"\x93NUMPY half")

    with pytest.warns(UserWarning, match="not a JSON object"):
        B._merge_manifest(output, B.find_images(photos))  # what the restart does first, seen here
    result = run_cli([*arguments, "--num-workers", "1"])
    assert result.returncode == 0, result.stderr
    written = int(result.stdout.split(" CAMs written")[0].split()[-1])
    skipped = int(result.stdout.split(" already done")[0].split()[-1])
    assert skipped >= 2 * BATCH and written < 35
    records = manifest(output)
    assert [record["name"] for record in records] == B.find_images(photos)  # every image once, in order
    assert tree(output) == tree(reference)  # and nothing half-written or left over


def test_a_rerun_skips_complete_batches_and_redoes_only_incomplete_ones(tmp_path):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for i in range(10):
        (photos / "d").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_picture(rng)).save(photos / "d" / f"{i}.png")
    model = batch_models.tiny_cnn()
    options = dict(output_dir=tmp_path / "out", batch_size=4, num_workers=0, image_size=IMAGE_SIZE)
    first = B.run(model, [model.features], photos, "gradcam", **options)
    assert (first.total, first.written, first.skipped, first.failed) == (10, 10, 0, 0)
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").rglob("*.npy")}
    again = B.run(model, [model.features], photos, "gradcam", **options)
    assert (again.written, again.skipped) == (0, 10)
    assert {path: path.stat().st_mtime_ns for path in before} == before
    (tmp_path / "out" / "d" / "5.png.npy").unlink()  # in the second batch (images 4-7)
    third = B.run(model, [model.features], photos, "gradcam", **options, save_overlay=False)
    assert (third.written, third.skipped) == (4, 6)
    assert len(manifest(tmp_path / "out")) == 10
    with_overlays = B.run(model, [model.features], photos, "gradcam", **options, save_overlay=True)
    assert with_overlays.written == 10  # a new output kind makes every batch incomplete
    assert len(list((tmp_path / "out").rglob("*.overlay.jpg"))) == 10


def test_a_rerun_with_other_settings_is_refused_unless_resume_is_false(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_picture(np.random.default_rng(0))).save(photos / "x.png")
    model = batch_models.tiny_cnn()
    options = dict(output_dir=tmp_path / "out", num_workers=0, image_size=IMAGE_SIZE)
    B.run(model, [model.features], photos, "gradcam", **options)
    with pytest.raises(B.ConfigError, match=r"method='gradcam' \(now 'eigencam'\)"):
        B.run(model, [model.features], photos, "eigencam", **options)
    summary = B.run(model, [model.features], photos, "eigencam", **options, resume=False)
    assert summary.written == 1
    (record,) = manifest(tmp_path / "out")
    assert record["method"] == "eigencam" and record["target"] is None and record["predicted"] is not None


def test_merge_keeps_the_latest_record_of_each_current_image_in_input_order(tmp_path):
    (tmp_path / B.SHARD_DIR).mkdir()
    (tmp_path / B.MANIFEST_NAME).write_text(
        '{"name": "a", "v": 1}\n{"name": "gone", "v": 1}\n{"name": "b", "v": 1}\n'
    )
    (tmp_path / B.SHARD_DIR / "rank-00001.jsonl").write_text(
        '{"name": "b", "v": 2}\n{"name": "c", "v": 2}\n{"na'
    )
    with pytest.warns(UserWarning, match="rank-00001.jsonl:3: not a JSON object"):
        merged = B._merge_manifest(tmp_path, ["c", "b", "a", "missing"])
    assert merged == [{"name": "c", "v": 2}, {"name": "b", "v": 2}, {"name": "a", "v": 1}]
    assert [json.loads(line) for line in (tmp_path / B.MANIFEST_NAME).read_text().splitlines()] == merged
    assert not (tmp_path / B.SHARD_DIR).exists()


# -- datasets, arguments, the model ------------------------------------------------------------------


class _Items(Dataset):
    """12 items: (3, 32, 32) tensors, two (3, 24, 40) ones, one that raises, one that is not a tensor."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        if index == 3:
            raise RuntimeError("sensor glitch")
        if index == 6:
            return np.zeros((3, 8, 8)), {"id": index}
        generator = torch.Generator().manual_seed(index)
        shape = (3, 24, 40) if index in (5, 9) else (3, 32, 32)
        return torch.randn(shape, generator=generator), {"id": index, "label": index % 5}


def test_a_dataset_of_tensor_and_meta_with_mixed_shapes_and_bad_items(tmp_path):
    model = batch_models.tiny_cnn()
    summary = B.run(
        model,
        [model.features],
        _Items(),
        "gradcam",
        output_dir=tmp_path,
        batch_size=4,
        num_workers=2,
        targets=lambda meta: meta["label"],
        save_overlay=True,
    )
    assert (summary.total, summary.written, summary.failed) == (12, 10, 2)
    records = manifest(tmp_path)
    assert [record["name"] for record in records] == [f"{i:02d}" for i in range(12)]
    assert records[3]["status"] == "error" and records[3]["error"] == "RuntimeError: sensor glitch"
    assert records[6]["status"] == "error" and "not a floating (C, H, W) tensor" in records[6]["error"]
    assert records[6]["meta"] is None
    items = _Items()
    for start in range(0, 12, 4):  # each batch, one CAM call per input shape, as the runner does
        good = [i for i in range(start, start + 4) if i not in (3, 6)]
        for shape in dict.fromkeys(tuple(items[i][0].shape) for i in good):
            group = [i for i in good if tuple(items[i][0].shape) == shape]
            x = torch.stack([items[i][0] for i in group])
            maps = GradCAM(model, [model.features])(x, targets=[ClassifierOutputTarget(i % 5) for i in group])
            logits = model(x)
            for row, i in enumerate(group):
                record = records[i]
                assert record["meta"] == {"id": i, "label": i % 5} and record["target"] == i % 5
                assert record["predicted"] == int(logits[row].argmax()) and record["cam_size"] == list(
                    shape[1:]
                )
                np.testing.assert_array_equal(np.load(tmp_path / record["cam"]), maps[row].astype(np.float16))
                with Image.open(tmp_path / record["overlay"]) as overlay:
                    assert overlay.size == (shape[2], shape[1])


def test_cam_size_resizes_every_cam(tmp_path):
    model = batch_models.tiny_cnn()
    B.run(model, [model.features], _Items(), "layercam", output_dir=tmp_path, cam_size=(8, 12), num_workers=0)
    for record in manifest(tmp_path):
        if record["status"] == "ok":
            assert np.load(tmp_path / record["cam"]).shape == (8, 12) and record["cam_size"] == [8, 12]


def test_the_model_is_left_as_it_was_on_success_and_on_error(tmp_path):
    model = batch_models.tiny_cnn().train()
    model.head.weight.requires_grad_(False)
    calls = []
    model.features.register_forward_hook(lambda *args: calls.append(1))
    state = {name: value.clone() for name, value in model.state_dict().items()}

    def unchanged() -> None:
        assert model.training and all(module.training for module in model.modules())
        assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]
        assert all(p.grad is None for p in model.parameters())
        assert len(model.features._forward_hooks) == 1 and not model.features._backward_hooks
        assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())

    B.run(model, [model.features], _Items(), "gradcam", output_dir=tmp_path / "ok", num_workers=0)
    unchanged()
    with pytest.raises(ValueError, match="never ran"):
        B.run(
            model, [torch.nn.Conv2d(3, 3, 1)], _Items(), "gradcam", output_dir=tmp_path / "bad", num_workers=0
        )
    unchanged()


class _Stream(IterableDataset):
    def __iter__(self):
        return iter([])


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"batch_size": 0}, B.ConfigError, "batch_size must be an int >= 1"),
        ({"num_workers": -1}, B.ConfigError, "num_workers must be an int >= 0"),
        ({"cam_size": (0, 4)}, B.ConfigError, "cam_size must be a positive int or an"),
        ({"image_size": None}, B.ConfigError, "image_size must be"),
        ({"method": "nosuchcam"}, B.ConfigError, "unknown method 'nosuchcam'"),
        ({"targets": "cat"}, B.ConfigError, "targets must be None, an int"),
        ({"html": 1}, B.ConfigError, "html must be True or False"),
        ({"dataset_or_dir": _Stream()}, TypeError, "map-style"),
        ({"dataset_or_dir": 42}, TypeError, "dataset_or_dir must be a folder path"),
        ({"dataset_or_dir": "/no/such/folder"}, B.ConfigError, "is not a folder"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, options, error, match):
    model = batch_models.tiny_cnn()
    arguments = {"dataset_or_dir": _Items(), "method": "gradcam", "output_dir": tmp_path, **options}
    with pytest.raises(error, match=match):
        B.run(model, [model.features], arguments.pop("dataset_or_dir"), arguments.pop("method"), **arguments)
    assert not (tmp_path / B.MANIFEST_NAME).exists()


def test_an_empty_folder_gives_an_empty_manifest_and_a_warning(tmp_path):
    model = batch_models.tiny_cnn()
    (tmp_path / "photos").mkdir()
    with pytest.warns(UserWarning, match="no images in"):
        summary = B.run(model, [model.features], tmp_path / "photos", output_dir=tmp_path / "out", html=True)
    assert (summary.total, summary.written) == (0, 0)
    assert (tmp_path / "out" / B.MANIFEST_NAME).read_text() == ""
    assert [page.name for page in summary.pages] == ["index.html"]


def test_output_dir_must_not_be_the_image_folder(tmp_path):
    model = batch_models.tiny_cnn()
    with pytest.raises(B.ConfigError, match="must not be the image folder"):
        B.run(model, [model.features], tmp_path, output_dir=tmp_path)


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    model = batch_models.tiny_cnn()
    B.run(model, [model.features], _Items(), "gradcam", output_dir=tmp_path / "a", num_workers=0)
    assert capsys.readouterr().err == ""
    B.run(
        model, [model.features], _Items(), "gradcam", output_dir=tmp_path / "b", num_workers=0, progress=True
    )
    err = capsys.readouterr().err
    assert "12/12" in err and "img/s" in err


# -- the command line and its models -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--method", "nosuchcam"], "unknown method 'nosuchcam'"),
        (["--target-layer", "features.9"], "no child '9'"),
        (["--model", "no_such_module_xyz:build"], "cannot import no_such_module_xyz"),
        (["--model", "nosuchnet"], "unknown model"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
    ],
)
def test_command_line_mistakes_give_one_line_and_status_2(tmp_path, capsys, extra, match):
    photos = tmp_path / "photos"
    photos.mkdir()
    arguments = ["--image-dir", str(photos), "--output-dir", str(tmp_path / "out")]
    arguments += ["--model", f"{MODELS}:tiny_cnn", "--target-layer", "features", *extra]
    assert B.main(arguments, prog="cam.py") == 2
    err = capsys.readouterr().err
    assert err.startswith("cam.py: error: ") and match in err and err.count("\n") == 1


def test_command_line_missing_image_dir(tmp_path, capsys):
    assert B.main(["--image-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path)], prog="x") == 2
    assert "no such folder" in capsys.readouterr().err


def test_load_model_factories_from_a_file_and_a_module():
    model, layers, names = B.load_model(f"{MODELS}:tiny_cnn")
    assert layers is None and names is None and not model.training
    assert torch.equal(model.head.weight, batch_models.tiny_cnn().head.weight)
    resnet, layers, names = B.load_model("torchvision.models:resnet18")
    assert type(resnet).__name__ == "ResNet" and layers is None
    with pytest.raises(B.UsageError, match="no callable 'nothing'"):
        B.load_model(f"{MODELS}:nothing")


def test_the_default_model_names_the_cat_and_the_cup(tmp_path):
    from skimage import data as skimage_data  # the test extra installs it, and the model's packages

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_data.chelsea()).save(photos / "chelsea.jpg")
    Image.fromarray(skimage_data.coffee()).save(photos / "coffee.jpg")
    model, layers, names = B.load_model("efficientnet_lite0")
    assert layers == [model._blocks[-1]] and len(names) == 1000
    summary = B.run(
        model,
        layers,
        photos,
        "gradcam",
        output_dir=tmp_path / "out",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        class_names=names,
        num_workers=0,
        cam_size=56,
    )
    assert summary.written == 2
    chelsea, coffee = manifest(tmp_path / "out")
    assert chelsea["predicted_name"] in ("tabby", "tiger cat", "Egyptian cat"), chelsea
    assert coffee["predicted_name"] in ("espresso", "cup", "coffee mug"), coffee
    assert chelsea["probability"] > 0.3
