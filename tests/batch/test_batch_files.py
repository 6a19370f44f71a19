"""pytorch_grad_cam.batch.files: finding images, decoding any image file to RGB, bad files."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest
from PIL import Image

from pytorch_grad_cam import batch as B
from pytorch_grad_cam.batch.files import (
    BadImage,
    atomic_write,
    load_rgb,
    save_npy,
    stale_temporaries,
    write_text,
)


def test_find_images_is_recursive_sorted_and_skips_hidden_other_files_and_the_output_folder(tmp_path):
    for name in ["b.PNG", "a/x.jpeg", "a/.hidden.jpg", ".cache/y.png", "out/z.png", "notes.txt", "a/t.tiff"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert B.find_images(tmp_path, exclude=tmp_path / "out") == ["a/t.tiff", "a/x.jpeg", "b.PNG"]
    assert "out/z.png" in B.find_images(tmp_path)


def test_load_rgb_converts_modes_with_the_right_values(tmp_path):
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
    if content == "half-jpeg":
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / "full.jpg"
        )
        content = (tmp_path / "full.jpg").read_bytes()[:600]
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(BadImage, match=reason):
        load_rgb(tmp_path / "x.jpg")


def test_atomic_writes_of_one_file_from_many_threads_never_collide(tmp_path):
    """Each write has its own temporary name: concurrent writers of one path never rename each other's
    file away (a fixed name made os.replace raise FileNotFoundError), and the file is always whole."""
    path = tmp_path / "x.npy"
    errors = []

    def write(value: int) -> None:
        try:
            for _ in range(30):
                save_npy(path, np.full(2000, value, dtype=np.float16))
        except Exception as error:  # recorded: the assertion below names it
            errors.append(error)

    threads = [threading.Thread(target=write, args=(value,)) for value in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    saved = np.load(path)
    assert saved.shape == (2000,) and len(set(saved.tolist())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # no temporary left


def test_a_failed_write_leaves_neither_a_temporary_nor_a_half_file(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    write_text(path, "old")

    def half_then_disk_full(file):
        file.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half_then_disk_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"] and path.read_text() == "old"


def test_stale_temporaries_are_found_under_the_output_folder(tmp_path):
    (tmp_path / "a").mkdir()
    for name in (".x.npy.tmp", "a/.y.jpg.1234-ab12cd34.tmp", "a/y.jpg", "keep.tmp", ".hidden"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in stale_temporaries(tmp_path)) == [
        ".x.npy.tmp",
        "a/.y.jpg.1234-ab12cd34.tmp",
    ]
