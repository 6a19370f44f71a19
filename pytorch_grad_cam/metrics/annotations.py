"""Where the objects are: boxes and masks from code or from files (COCO JSON, Pascal VOC XML, CSV, PNGs).

Every reader returns :class:`Annotations`, image name -> :class:`Annotation`; an image is found by its
path under the image folder, else its file name, else its file name without the extension. Boxes are
``x1, y1, x2, y2`` in the image's pixels (pixel ``(i, j)`` spans ``[j, j + 1) x [i, i + 1)``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pytorch_grad_cam.metrics.localisation import boxes_to_mask


@dataclasses.dataclass
class Annotation:
    """One image's objects.

    Attributes:
        boxes: ``(N, 4)`` float64 ``x1, y1, x2, y2`` in the image's pixels.
        labels: one name per box.
        mask: ``(H, W)`` bool segmentation of the objects at ``size``, or None (the boxes stand in).
        size: ``(H, W)`` the coordinates refer to; None: the image's own size.
    """

    boxes: torch.Tensor
    labels: list[str] = dataclasses.field(default_factory=list)
    mask: torch.Tensor | None = None
    size: tuple[int, int] | None = None

    def masks(
        self, size: tuple[int, int], image_size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes' mask and the objects' mask (the boxes' when no segmentation), resized to ``size``.

        Args:
            size: ``(H, W)`` of the maps to score.
            image_size: the image's ``(H, W)``, for an annotation without ``size``.

        Returns:
            ``(H, W)`` bool, ``(H, W)`` bool.
        """
        source = self.size or image_size or (self.mask.shape if self.mask is not None else None)
        if source is None:
            raise ValueError("the annotation has no size: pass image_size, the image's (height, width)")
        scale = torch.tensor([size[1] / source[1], size[0] / source[0]] * 2, dtype=torch.float64)
        box_mask = boxes_to_mask(self.boxes * scale, size)
        if self.mask is None:
            return box_mask, box_mask
        mask = F.interpolate(self.mask[None, None].float(), size=tuple(size), mode="nearest")[0, 0] > 0.5
        if not len(self.boxes):
            box_mask = boxes_to_mask(mask_box(mask), size) if mask.any() else mask
        return box_mask, mask


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """The ``(1, 4)`` box around a non-empty ``(H, W)`` mask."""
    rows = torch.nonzero(mask.any(dim=1))[:, 0]
    cols = torch.nonzero(mask.any(dim=0))[:, 0]
    return torch.tensor([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], dtype=torch.float64)


class Annotations(Mapping[str, Annotation]):
    """Image name -> :class:`Annotation`, looked up by path, then file name, then stem."""

    def __init__(self, items: Mapping[str, Annotation], source: str = "code") -> None:
        self._items = dict(items)
        self.source = source
        self._by_name: dict[str, str] = {}
        self._by_stem: dict[str, str] = {}
        for key in self._items:
            path = Path(key.replace("\\", "/"))
            self._by_name.setdefault(path.name, key)
            self._by_stem.setdefault(path.stem, key)

    def __getitem__(self, name: str) -> Annotation:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def find(self, name: str) -> Annotation | None:
        """The annotation of the image at ``name`` (a path under the image folder), or None."""
        if name in self._items:
            return self._items[name]
        path = Path(name.replace("\\", "/"))
        key = self._by_name.get(path.name) or self._by_stem.get(path.stem)
        return None if key is None else self._items[key]


def _boxes(rows: Sequence[Sequence[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


def _rle_mask(segmentation: dict, height: int, width: int) -> np.ndarray | None:
    counts = segmentation.get("counts")
    if not isinstance(counts, list):
        return None  # compressed RLE: its box stands in
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for run in counts:
        flat[position : position + int(run)] = value
        position, value = position + int(run), not value
    return flat.reshape(width, height).T  # column-major


def read_coco(path: str | os.PathLike) -> Annotations:
    """A COCO instances JSON: boxes (``[x, y, w, h]``), category names, polygon or uncompressed RLE
    masks (a compressed RLE leaves its object to its box, with a warning)."""
    import cv2

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path}: not a COCO file (no 'images' and 'annotations')")
    names = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", [])}
    images = {image["id"]: image for image in data["images"]}
    rows: dict[int, list] = {key: [] for key in images}
    for item in data["annotations"]:
        rows.setdefault(item["image_id"], []).append(item)
    compressed = 0
    result = {}
    for image_id, items in rows.items():
        image = images.get(image_id)
        if image is None:
            continue
        height, width = int(image["height"]), int(image["width"])
        mask = np.zeros((height, width), dtype=np.uint8)
        for item in items:
            x, y, w, h = (float(v) for v in item["bbox"])
            segmentation = item.get("segmentation")
            if isinstance(segmentation, list) and segmentation:
                for polygon in segmentation:
                    points = np.round(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
                    cv2.fillPoly(mask, [points], 1)
            elif isinstance(segmentation, dict) and _rle_mask(segmentation, height, width) is not None:
                mask |= _rle_mask(segmentation, height, width).astype(np.uint8)
            else:
                compressed += isinstance(segmentation, dict)
                mask[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = 1
        corners = [[x, y, x + w, y + h] for x, y, w, h in ([float(v) for v in i["bbox"]] for i in items)]
        result[str(image["file_name"])] = Annotation(
            _boxes(corners),
            [names.get(i.get("category_id"), str(i.get("category_id"))) for i in items],
            torch.from_numpy(mask > 0) if items else None,
            (height, width),
        )
    if compressed:
        warnings.warn(f"{path}: {compressed} compressed RLE masks replaced by their boxes", stacklevel=2)
    return Annotations(result, source=str(path))


def _voc_file(path: Path) -> tuple[str, Annotation]:
    root = ElementTree.parse(path).getroot()
    name = root.findtext("filename") or path.with_suffix(".jpg").name
    size = root.find("size")
    hw = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        hw = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
    rows, labels = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        # VOC counts pixels from 1, both ends included: pixel columns xmin..xmax are [xmin - 1, xmax)
        corners = [float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")]
        rows.append([corners[0] - 1, corners[1] - 1, corners[2], corners[3]])
        labels.append(obj.findtext("name") or "")
    return name, Annotation(_boxes(rows), labels, None, hw)


def read_voc(path: str | os.PathLike) -> Annotations:
    """Pascal VOC XML: one file, or a folder of them (searched recursively)."""
    path = Path(path)
    files = sorted(path.rglob("*.xml")) if path.is_dir() else [path]
    try:
        return Annotations(dict(_voc_file(file) for file in files), source=str(path))
    except (ElementTree.ParseError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not Pascal VOC XML ({error})") from None


def read_box_csv(path: str | os.PathLike) -> Annotations:
    """A CSV with a header: ``image, x1, y1, x2, y2`` and optionally ``label``, ``height``, ``width``
    (one row per box; several rows for an image)."""
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        needed = {"image", "x1", "y1", "x2", "y2"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise ValueError(f"{path}: a box CSV needs the columns {sorted(needed)}; got {reader.fieldnames}")
        grouped: dict[str, tuple[list, list, tuple[int, int] | None]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
                size = None
                if row.get("height") and row.get("width"):
                    size = (int(row["height"]), int(row["width"]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: coordinates must be numbers; got {row}") from None
            boxes, labels, _ = grouped.setdefault(row["image"], ([], [], size))
            boxes.append(box)
            labels.append(row.get("label") or "")
    items = {
        name: Annotation(_boxes(boxes), labels, None, size) for name, (boxes, labels, size) in grouped.items()
    }
    return Annotations(items, source=str(path))


def read_mask_folder(path: str | os.PathLike) -> Annotations:
    """A folder of PNG masks (searched recursively): a pixel is on the object where any channel is
    non-zero; the image is found by the mask's path without ``.png``, its file name or its stem."""
    from PIL import Image

    folder = Path(path)
    result = {}
    for file in sorted(folder.rglob("*.png")):
        with Image.open(file) as image:
            pixels = np.asarray(image)
        mask = torch.from_numpy((pixels.reshape(*pixels.shape[:2], -1) != 0).any(axis=-1))
        key = file.relative_to(folder).with_suffix("").as_posix()
        result[key] = Annotation(_boxes([]), [], mask, tuple(mask.shape))
    return Annotations(result, source=str(folder))


def read_annotations(path: str | os.PathLike) -> Annotations:
    """Any of the formats, by what ``path`` is: ``.json`` (COCO), ``.xml`` or a folder of them (VOC),
    ``.csv`` (boxes), a folder of ``.png`` (masks)."""
    path = Path(path)
    if path.is_dir():
        if any(path.rglob("*.xml")):
            return read_voc(path)
        if any(path.rglob("*.png")):
            return read_mask_folder(path)
        raise ValueError(f"annotations: {path} holds no .xml (Pascal VOC) or .png (masks) files")
    readers = {".json": read_coco, ".xml": read_voc, ".csv": read_box_csv}
    if not path.is_file() or path.suffix.lower() not in readers:
        raise ValueError(f"annotations must be a COCO .json, a VOC .xml, a box .csv or a folder; got {path}")
    return readers[path.suffix.lower()](path)
