"""metrics.annotations: each reader on a small file written here, the lookup by name, the resizing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pytorch_grad_cam.metrics.annotations import (
    Annotation,
    Annotations,
    read_annotations,
    read_box_csv,
    read_coco,
    read_mask_folder,
    read_voc,
)


def _window(size, rows, cols):
    mask = torch.zeros(size, dtype=torch.bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_coco_boxes_polygons_and_rle(tmp_path):
    path = tmp_path / "ann.json"
    rle = np.zeros((6, 10), dtype=bool)
    rle[4:6, 0:2] = True
    counts = [4, 2, 4, 2, 48]  # column-major: column 0 rows 4-5, column 1 rows 4-5
    data = {
        "images": [
            {"id": 1, "file_name": "sub/cat.jpg", "height": 6, "width": 10},
            {"id": 2, "file_name": "x.png", "height": 4, "width": 4},
        ],
        "categories": [{"id": 7, "name": "cat"}],
        "annotations": [
            {
                "image_id": 1,
                "category_id": 7,
                "bbox": [2, 1, 4, 3],
                "segmentation": [[2, 1, 6, 1, 6, 3, 2, 3]],
            },
            {
                "image_id": 1,
                "category_id": 7,
                "bbox": [0, 4, 2, 2],
                "segmentation": {"size": [6, 10], "counts": counts},
            },
        ],
    }
    path.write_text(json.dumps(data))
    annotations = read_coco(path)
    cat = annotations["sub/cat.jpg"]
    assert cat.labels == ["cat", "cat"] and cat.size == (6, 10)
    assert cat.boxes.tolist() == [[2, 1, 6, 4], [0, 4, 2, 6]]
    expected = _window((6, 10), (1, 4), (2, 7)) | torch.from_numpy(rle)  # fillPoly includes the edges
    assert torch.equal(cat.mask, expected)
    assert annotations["x.png"].boxes.shape == (0, 4)  # an image without objects


def test_voc_file_and_folder(tmp_path):
    xml = """<annotation><filename>dog.jpg</filename><size><width>8</width><height>6</height></size>
    <object><name>dog</name><bndbox><xmin>2</xmin><ymin>1</ymin><xmax>4</xmax><ymax>3</ymax></bndbox></object>
    </annotation>"""
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "dog.xml").write_text(xml)
    for found in (read_voc(tmp_path / "voc" / "dog.xml"), read_annotations(tmp_path / "voc")):
        dog = found["dog.jpg"]
        # 1-based, both ends in: columns 2..4 are pixels 1, 2, 3
        assert dog.boxes.tolist() == [[1, 0, 4, 3]] and dog.labels == ["dog"] and dog.size == (6, 8)
        box_mask, mask = dog.masks((6, 8))
        assert torch.equal(box_mask, _window((6, 8), (0, 3), (1, 4))) and torch.equal(mask, box_mask)


def test_csv_rows_grouped_by_image(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,x1,y1,x2,y2,label\na.jpg,0,0,2,2,x\na.jpg,4,4,6,6,y\nb.jpg,1,1,3,3,\n")
    annotations = read_box_csv(path)
    assert annotations["a.jpg"].boxes.tolist() == [[0, 0, 2, 2], [4, 4, 6, 6]]
    assert annotations["a.jpg"].labels == ["x", "y"] and annotations["b.jpg"].labels == [""]
    # no size in the file: the image's own size is needed, and the boxes scale with it
    box_mask, _ = annotations["b.jpg"].masks((4, 4), image_size=(8, 8))
    # (1, 1, 3, 3) halves to (0.5, 0.5, 1.5, 1.5): only the centre 0.5 is in [0.5, 1.5)
    assert torch.equal(box_mask, _window((4, 4), (0, 1), (0, 1)))
    path.write_text("image,x,y\na.jpg,1,2\n")
    with pytest.raises(ValueError, match="needs the columns"):
        read_box_csv(path)


def test_mask_folder_and_lookup(tmp_path):
    folder = tmp_path / "masks" / "sub"
    folder.mkdir(parents=True)
    pixels = np.zeros((4, 6), dtype=np.uint8)
    pixels[1:3, 2:5] = 255
    Image.fromarray(pixels).save(folder / "bird.png")
    annotations = read_annotations(tmp_path / "masks")
    bird = annotations.find("sub/bird.jpg")
    assert bird is annotations.find("other/bird.jpeg") is annotations["sub/bird"]
    assert annotations.find("fish.jpg") is None
    box_mask, mask = bird.masks((8, 12))  # doubled by nearest neighbour
    assert torch.equal(mask, _window((8, 12), (2, 6), (4, 10)))
    assert torch.equal(box_mask, mask)  # a rectangle: its box is itself
    assert len(read_mask_folder(tmp_path / "masks")) == 1


def test_from_code_and_bad_paths(tmp_path):
    annotations = Annotations({"a.jpg": Annotation(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), ["x"], size=(4, 4))})
    assert torch.equal(annotations.find("a.jpg").masks((4, 4))[0], _window((4, 4), (0, 2), (0, 2)))
    with pytest.raises(ValueError, match="no size"):
        Annotation(torch.zeros(0, 4)).masks((4, 4))
    with pytest.raises(ValueError, match="annotations must be"):
        read_annotations(tmp_path / "nothing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        read_annotations(tmp_path / "empty")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a COCO file"):
        read_annotations(tmp_path / "bad.json")
