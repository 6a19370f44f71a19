"""The writer: one image's files (the CAM, its overlay, thumbnails) and its manifest record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pytorch_grad_cam import functional as CF
from pytorch_grad_cam.batch.compute import Result
from pytorch_grad_cam.batch.detection import BoxesResult, box_paths, scaled_boxes
from pytorch_grad_cam.batch.files import OutsidePath, folder_inside, save_jpeg, save_npy
from pytorch_grad_cam.batch.manifest import output_paths
from pytorch_grad_cam.batch.segmentation import ClassesResult, class_paths
from pytorch_grad_cam.batch.sources import Sample
from pytorch_grad_cam.utils.drawing import draw_box, draw_mask
from pytorch_grad_cam.utils.image import show_cam_on_image


class Writer:
    """Writes one image's files and makes its manifest record."""

    def __init__(
        self,
        output_dir: Path,
        names: Sequence[str],
        *,
        image_dir: Path | None,
        method_name: str,
        save_overlay: bool,
        html: bool,
        class_names: Sequence[str] | None,
        is_dataset: bool,
    ) -> None:
        self.output_dir = output_dir
        self.names = names
        self.image_dir = image_dir.resolve() if image_dir is not None else None
        self.method_name = method_name
        self.save_overlay = save_overlay
        self.html = html
        self.class_names = list(class_names) if class_names is not None else None
        self.is_dataset = is_dataset
        self._folders: set[Path] = set()

    def _class_name(self, index: int | None) -> str | None:
        if index is None or self.class_names is None or not 0 <= index < len(self.class_names):
            return None
        return str(self.class_names[index])

    def _path(self, relative: str) -> Path:
        path = self.output_dir / relative
        if path.parent not in self._folders:
            folder_inside(self.output_dir, str(Path(relative).parent))
            self._folders.add(path.parent)
        return path

    def record(self, sample: Sample, result: Result | BoxesResult | ClassesResult | None) -> dict:
        """Write one image's files and return its record (an error record for a bad image, or for
        one whose files would go out of the output folder through a planted link)."""
        try:
            return self._record(sample, result)
        except OutsidePath as error:
            sample.error = f"not written: {error}"
            return self._record(sample, None)

    def _record(self, sample: Sample, result: Result | BoxesResult | ClassesResult | None) -> dict:
        name = self.names[sample.index]
        record: dict[str, Any] = {
            "name": name,
            "image": str(self.image_dir / name) if self.image_dir is not None else None,
        }
        if sample.error is not None or result is None:
            record.update(status="error", method=self.method_name, error=sample.error or "no CAM computed")
            if self.is_dataset:
                record["meta"] = json_safe(sample.meta)
            return record
        if isinstance(result, BoxesResult):
            return self._boxes_record(sample, result, record)
        if isinstance(result, ClassesResult):
            return self._classes_record(sample, result, record)
        paths = output_paths(name, overlay=self.save_overlay, thumbnail=self.html)
        for relative in paths.values():  # every folder checked before the first file is written
            if relative is not None:
                self._path(relative)
        maps = result.cam.unsqueeze(0)  # (1, H, W), on the device where the CAM left it
        cam = CF.resize_cams(maps, sample.cam_size)[0].cpu()  # the written map: its one transfer
        save_npy(self._path(paths["cam"]), cam.to(torch.float16).numpy())
        if self.save_overlay:
            overlay = show_cam_on_image(
                sample.overlay_rgb.astype(np.float32) / 255.0, cam.numpy(), use_rgb=True
            )
            save_jpeg(self._path(paths["overlay"]), overlay)
        if self.html:
            thumbnail = sample.thumbnail_rgb
            small = CF.resize_cams(maps, thumbnail.shape[:2])[0].cpu().numpy()
            save_jpeg(self._path(paths["thumbnail"]), thumbnail)
            save_jpeg(
                self._path(paths["overlay_thumbnail"]),
                show_cam_on_image(thumbnail.astype(np.float32) / 255.0, small, use_rgb=True),
            )
        record.update(
            status="ok",
            method=self.method_name,
            predicted=result.predicted,
            predicted_name=self._class_name(result.predicted),
            probability=result.probability,
            target=result.target,
            target_name=self._class_name(result.target),
            cam_size=list(sample.cam_size),
            **paths,
            converted_from=sample.converted_from,
        )
        if self.is_dataset:
            record["meta"] = json_safe(sample.meta)
        return record

    def _boxes_record(self, sample: Sample, result: BoxesResult, record: dict[str, Any]) -> dict:
        """A detection run's image: each box's map (and overlay) and its entry in ``boxes``."""
        name = self.names[sample.index]
        size = sample.cam_size
        maps = CF.resize_cams(result.cams, size).cpu() if len(result.labels) else result.cams.cpu()
        boxes = scaled_boxes(result.boxes, result.input_size, size)
        entries = []
        for k in range(len(result.labels)):  # every folder checked before the first file is written
            for relative in box_paths(name, k, overlay=self.save_overlay).values():
                if relative is not None:
                    self._path(relative)
        for k, (label, score) in enumerate(zip(result.labels, result.scores)):
            paths = box_paths(name, k, overlay=self.save_overlay)
            save_npy(self._path(paths["cam"]), maps[k].to(torch.float16).numpy())
            label_name = self._class_name(label)
            if self.save_overlay:
                rgb = sample.overlay_rgb.astype(np.float32) / 255.0
                picture = show_cam_on_image(rgb, maps[k].numpy(), use_rgb=True)
                text = f"{label_name if label_name is not None else label} {score:.2f}"
                save_jpeg(self._path(paths["overlay"]), draw_box(picture, boxes[k], text))
            entries.append(
                {
                    "label": label,
                    "label_name": label_name,
                    "score": score,
                    "box": boxes[k],
                    "input_box": [round(float(v), 2) for v in result.boxes[k].tolist()],
                    **paths,
                }
            )
        record.update(
            status="ok",
            method=self.method_name,
            task="detection",
            boxes=entries,
            cam_size=list(size),
            converted_from=sample.converted_from,
        )
        if self.is_dataset:
            record["meta"] = json_safe(sample.meta)
        return record

    def _classes_record(self, sample: Sample, result: ClassesResult, record: dict[str, Any]) -> dict:
        """A segmentation run's image: each class's map (and overlay, its mask outlined) and its entry
        in ``classes``."""
        name = self.names[sample.index]
        size = sample.cam_size
        maps = CF.resize_cams(result.cams, size).cpu() if result.classes else result.cams.cpu()
        for k in result.classes:  # every folder checked before the first file is written
            for relative in class_paths(name, k, overlay=self.save_overlay).values():
                if relative is not None:
                    self._path(relative)
        entries = []
        for cam, mask, k, area in zip(maps, result.masks, result.classes, result.areas):
            paths = class_paths(name, k, overlay=self.save_overlay)
            save_npy(self._path(paths["cam"]), cam.to(torch.float16).numpy())
            class_name = self._class_name(k)
            if self.save_overlay:
                rgb = sample.overlay_rgb.astype(np.float32) / 255.0
                picture = show_cam_on_image(rgb, cam.numpy(), use_rgb=True)
                text = f"{class_name if class_name is not None else f'class {k}'} {area:.0%}"
                save_jpeg(self._path(paths["overlay"]), draw_mask(picture, mask.cpu().numpy(), text))
            entries.append({"class": k, "class_name": class_name, "area": area, **paths})
        record.update(
            status="ok",
            method=self.method_name,
            task="segmentation",
            classes=entries,
            cam_size=list(size),
            converted_from=sample.converted_from,
        )
        if self.is_dataset:
            record["meta"] = json_safe(sample.meta)
        return record


def json_safe(value: Any) -> Any:
    """``value`` if strict JSON holds it (no NaN or inf: JSON has none), else its ``repr``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def record_line(record: dict) -> str:
    """One manifest line: strict JSON (a record holding a NaN or inf becomes an error record)."""
    try:
        return json.dumps(record, allow_nan=False) + "\n"
    except ValueError:
        kept = {key: record.get(key) for key in ("name", "image", "method")}
        error = {**kept, "status": "error", "error": "the outputs hold NaN or inf values"}
        return json.dumps(error, allow_nan=False) + "\n"
