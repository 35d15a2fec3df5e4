"""COCO instances + captions reader, with the open-vocabulary split file and LVIS-style JSON.

Layout::

    <image_dir>/<file_name>                 e.g. coco/train2017/000000000001.jpg
    instances_<split>.json                  {"images", "annotations", "categories"}; LVIS adds
                                            "not_exhaustive_category_ids"/"neg_category_ids" per image and
                                            may give "coco_url" instead of "file_name"
    captions_<split>.json                   {"images", "annotations": [{"image_id", "caption"}]}
    ovd split file                          {"all": [ids], "base": [ids], "novel": [ids]}
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lowlabel.data.io import load_rgb, read_json, to_boxes, to_image
from lowlabel.errors import DataError


def load_ovd_split(path: str | Path) -> dict[str, list[int]]:
    """``{"all": [...], "base": [...], "novel": [...]}`` category ids; base and novel must not overlap."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not {"base", "novel"} <= set(data):
        raise DataError(f"{path}: expected an object with 'base' and 'novel' category id lists")
    try:
        split = {k: [int(v) for v in data[k]] for k in ("base", "novel")}
    except (TypeError, ValueError):
        raise DataError(f"{path}: category ids must be integers") from None
    split["all"] = [int(v) for v in data.get("all", split["base"] + split["novel"])]
    overlap = set(split["base"]) & set(split["novel"])
    if overlap:
        raise DataError(f"{path}: category {min(overlap)} is both base and novel")
    return split


def _file_name(img: dict, path: Path) -> str:
    if "file_name" in img:
        return str(img["file_name"])
    if "coco_url" in img:  # LVIS
        return str(img["coco_url"]).rsplit("/", 1)[-1]
    raise DataError(f"{path}: image {img.get('id')!r} has neither file_name nor coco_url")


class COCODetection(Dataset):
    """COCO-format images with boxes (optionally restricted to base/novel categories) and captions.

    Item: ``{"image": Image uint8 (3, H, W), "boxes": BoundingBoxes XYXY (N, 4), exclusive extents
    ``[x, y, x + w, y + h]``, "labels": int64 (N,) contiguous indices into ``class_names``,
    "category_ids": int64 (N,), "iscrowd": bool (N,), "captions": list[str], "image_id": int,
    "file_name": str, "orig_size": (H, W)}``; LVIS files add ``"neg_category_ids"`` and
    ``"not_exhaustive_category_ids"``.

    Args:
        image_dir: folder of the images.
        ann_file: instances JSON (may be None when ``captions_file`` is given: captions only).
        captions_file: captions JSON (optional).
        split_file: open-vocabulary split JSON; required for ``subset`` other than ``"all"``.
        subset: keep categories (and boxes) of ``"all"``, ``"base"`` or ``"novel"``.
        skip_corrupt: drop images whose file is missing (prints a count).
    """

    def __init__(
        self,
        *,
        image_dir: str | Path,
        ann_file: str | Path | None,
        captions_file: str | Path | None = None,
        split_file: str | Path | None = None,
        subset: str = "all",
        transforms: Callable | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        if ann_file is None and captions_file is None:
            raise ValueError("give ann_file, captions_file or both")
        if subset not in ("all", "base", "novel"):
            raise ValueError(f"subset must be all, base or novel, got {subset!r}")
        self.image_dir, self.transforms = Path(image_dir), transforms
        main = Path(ann_file or captions_file)  # type: ignore[arg-type]
        data = read_json(main)
        if not isinstance(data, dict) or "images" not in data:
            raise DataError(f"{main}: expected a COCO object with an 'images' list")
        self.images: dict[int, dict] = {}
        for img in data["images"]:
            if "id" not in img:
                raise DataError(f"{main}: an image entry has no 'id'")
            self.images[int(img["id"])] = {**img, "file_name": _file_name(img, main)}
        cats = sorted(data.get("categories", []), key=lambda c: int(c["id"]))
        if split_file is not None and subset != "all":
            keep = set(load_ovd_split(split_file)[subset])
            cats = [c for c in cats if int(c["id"]) in keep]
        elif subset != "all":
            raise ValueError(f"subset={subset!r} needs split_file")
        self.cat_ids = [int(c["id"]) for c in cats]
        self.class_names = [str(c["name"]) for c in cats]
        self.cat_to_label = {cid: i for i, cid in enumerate(self.cat_ids)}
        self.annotations: dict[int, list[dict]] = {i: [] for i in self.images}
        if ann_file is not None:
            self._index_annotations(data, main)
        self.captions: dict[int, list[str]] = {i: [] for i in self.images}
        if captions_file is not None:
            self._index_captions(Path(captions_file), data if captions_file == ann_file else None)
        self.ids = sorted(self.images)
        self.skipped = 0
        if skip_corrupt:
            keep_ids = [i for i in self.ids if (self.image_dir / self.images[i]["file_name"]).is_file()]
            self.skipped = len(self.ids) - len(keep_ids)
            if self.skipped:
                print(f"lowlabel: skipped {self.skipped} images of {main} without a file", file=sys.stderr)
            self.ids = keep_ids

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def _index_annotations(self, data: dict, path: Path) -> None:
        all_cats = {int(c["id"]) for c in data.get("categories", [])}
        for ann in data.get("annotations", []):
            try:
                img_id, cat, bbox = int(ann["image_id"]), int(ann["category_id"]), [float(v) for v in ann["bbox"]]
            except (KeyError, TypeError, ValueError):
                raise DataError(
                    f"{path}: annotation {ann.get('id')!r} lacks a valid image_id/category_id/bbox"
                ) from None
            if img_id not in self.images:
                raise DataError(f"{path}: annotation {ann.get('id')!r} refers to unknown image id {img_id}")
            if cat not in all_cats:
                raise DataError(f"{path}: annotation {ann.get('id')!r} has unknown category id {cat}")
            if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{path}: annotation {ann.get('id')!r} has a malformed bbox {bbox}")
            if cat in self.cat_to_label:
                self.annotations[img_id].append({**ann, "bbox": bbox, "category_id": cat})

    def _index_captions(self, path: Path, data: dict | None) -> None:
        data = data if data is not None else read_json(path)
        if not isinstance(data, dict) or "annotations" not in data:
            raise DataError(f"{path}: expected a COCO captions object with 'annotations'")
        for ann in data["annotations"]:
            img_id = int(ann.get("image_id", -1))
            if img_id not in self.images:
                raise DataError(f"{path}: caption {ann.get('id')!r} refers to unknown image id {img_id}")
            if "caption" in ann:
                self.captions[img_id].append(str(ann["caption"]))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img_id = self.ids[index]
        info = self.images[img_id]
        arr = load_rgb(self.image_dir / info["file_name"])
        hw = (arr.shape[0], arr.shape[1])
        anns = self.annotations[img_id]
        xywh = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        target: dict[str, Any] = {
            "boxes": to_boxes(xyxy, hw),
            "labels": torch.tensor([self.cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "category_ids": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool),
            "captions": list(self.captions[img_id]),
            "image_id": img_id,
            "file_name": info["file_name"],
            "orig_size": hw,
        }
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            if key in info:
                target[key] = list(info[key])
        image = to_image(arr)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return {"image": image, **target}
