"""Unpaired domain folders (CUT-style ``trainA/ trainB/ testA/ testB``) and detection folders with COCO-JSON or
VOC-XML boxes (Cityscapes, Foggy Cityscapes, Sim10k, KITTI converted to either format)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lowlabel.data import io
from lowlabel.data.coco import COCODetection
from lowlabel.data.io import load_rgb, parse_voc_objects, read_xml, to_boxes, to_image
from lowlabel.errors import DataError


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); ``DataError`` when it is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    return io.list_images(folder, suffixes=IMAGE_EXTS)


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class UnpairedImages(Dataset):
    """Images of two domains without correspondence (CUT's unaligned dataset).

    Item ``i``: ``{"a": Image uint8, "b": Image uint8, "a_path": str, "b_path": str}`` with ``a = A[i % |A|]`` and
    ``b`` drawn uniformly from B with ``torch``'s generator (or ``B[i % |B|]`` when ``serial=True``).
    ``transforms`` is applied to each image separately.
    """

    def __init__(
        self, *, dir_a: str | Path, dir_b: str | Path, transforms: Callable | None = None, serial: bool = False
    ) -> None:
        self.a, self.b = list_images(dir_a), list_images(dir_b)  # each DataError when empty
        self.transforms, self.serial = transforms, serial

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, index: int) -> dict[str, Any]:
        pa = self.a[index % len(self.a)]
        pb = self.b[index % len(self.b)] if self.serial else self.b[int(torch.randint(len(self.b), ()).item())]
        a, b = to_image(load_rgb(pa)), to_image(load_rgb(pb))
        if self.transforms is not None:
            a, b = self.transforms(a), self.transforms(b)
        return {"a": a, "b": b, "a_path": str(pa), "b_path": str(pb)}


class DetectionFolder(Dataset):
    """Images with boxes from a COCO JSON file or a folder of VOC XML files (one ``<stem>.xml`` per image).

    Item: ``{"image": Image uint8, "boxes": BoundingBoxes XYXY (N, 4) with exclusive extents (COCO
    ``[x, y, x + w, y + h]``; VOC ``[xmin - 1, ymin - 1, xmax, ymax]``), "labels": int64 (N,) into
    ``class_names``, "image_id": str | int, "file_name": str (relative to ``image_dir``), "orig_size": (H, W)}``.
    """

    def __init__(
        self,
        *,
        image_dir: str | Path,
        annotations: str | Path,
        class_names: list[str] | None = None,
        transforms: Callable | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.image_dir, self.transforms = Path(image_dir), transforms
        ann = Path(annotations)
        self.coco: COCODetection | None = None
        if ann.suffix == ".json":
            self.coco = COCODetection(image_dir=image_dir, ann_file=ann, skip_corrupt=skip_corrupt)
            self.class_names = self.coco.class_names
            return
        if not ann.is_dir():
            raise DataError(f"{ann}: expected a COCO .json file or a folder of VOC .xml files")
        self.xml_dir = ann
        images = list_images(image_dir)
        self.items = [p for p in images if (ann / f"{p.stem}.xml").is_file() or not skip_corrupt]
        skipped = len(images) - len(self.items)
        if skipped:
            print(f"lowlabel: skipped {skipped} images of {image_dir} without an XML file", file=sys.stderr)
        self.class_names = list(class_names) if class_names else self._scan_classes()

    def _scan_classes(self) -> list[str]:
        names: set[str] = set()
        for p in sorted(self.xml_dir.glob("*.xml")):
            names.update((o.findtext("name") or "").strip() for o in read_xml(p).iter("object"))
        return sorted(n for n in names if n)

    def __len__(self) -> int:
        return len(self.coco) if self.coco is not None else len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.coco is not None:
            item = self.coco[index]
            out = {k: item[k] for k in ("image", "boxes", "labels", "image_id", "file_name", "orig_size")}
            if self.transforms is not None:
                image, target = self.transforms(out.pop("image"), out)
                out = {"image": image, **target}
            return out
        path = self.items[index]
        arr = load_rgb(path)
        hw = (arr.shape[0], arr.shape[1])
        boxes, labels, _, _ = parse_voc_objects(self.xml_dir / f"{path.stem}.xml", self.class_names)
        boxes = boxes + np.asarray([0, 0, 1, 1], np.float32)  # 0-based inclusive -> exclusive extents
        image = to_image(arr)
        target = {
            "boxes": to_boxes(boxes, hw),
            "labels": torch.from_numpy(labels),
            "image_id": path.stem,
            "file_name": path.name,
            "orig_size": hw,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return {"image": image, **target}


def shapesworld_domains(root: str | Path, split: str, **kwargs: Any) -> DetectionFolder:
    """A labelled split (``trainA``, ``testA``, ``testB``) of ShapesWorld's ``domains/`` folder."""
    root = Path(root)
    return DetectionFolder(image_dir=root / split, annotations=root / "annotations" / f"{split}.json", **kwargs)
