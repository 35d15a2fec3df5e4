"""PASCAL VOC 2012 segmentation reader (with the SBD-augmented ``train_aug`` list and XML boxes).

Layout (``root`` = ``VOCdevkit/VOC2012`` or ShapesWorld's ``voc/``)::

    JPEGImages/<id>.jpg  Annotations/<id>.xml  SegmentationClass/<id>.png  [SegmentationClassAug/<id>.png]
    ImageSets/Segmentation/{train,val,trainval[,train_aug]}.txt
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from lowlabel.data.io import load_index_png, load_rgb, parse_voc_objects, read_lines, to_boxes, to_image
from lowlabel.errors import DataError
from lowlabel.structures import VOC_CLASSES


def read_split(root: Path, split: str) -> tuple[Path, list[str]]:
    """Ids of ``split``: a name under ``ImageSets/Segmentation`` (then ``ImageSets/Main``), or a .txt path."""
    candidates = (
        [Path(split)]
        if split.endswith(".txt")
        else [root / "ImageSets" / "Segmentation" / f"{split}.txt", root / "ImageSets" / "Main" / f"{split}.txt"]
    )
    for path in candidates:
        if path.is_file():
            return path, [line.split()[0] for line in read_lines(path)]
    raise DataError(f"{candidates[0]}: split list not found")


def load_label_list(path: Path, class_names: list[str]) -> dict[str, np.ndarray]:
    """Image-level labels: SBD/IRN-style ``cls_labels.npy`` (dict id -> multi-hot) or text ``id cls cls ...``."""
    k = len(class_names)
    if path.suffix == ".npy":
        try:
            table = np.load(path, allow_pickle=True).item()
        except (OSError, ValueError, AttributeError) as e:
            raise DataError(f"{path}: not a cls_labels.npy dict ({e})") from None
        return {str(key): np.asarray(v, np.float32).reshape(-1)[:k] for key, v in table.items()}
    out: dict[str, np.ndarray] = {}
    index = {n: i for i, n in enumerate(class_names)}
    for lineno, line in enumerate(read_lines(path), 1):
        image_id, *names = line.split()
        vec = np.zeros(k, np.float32)
        for name in names:
            c = int(name) if name.isdigit() else index.get(name, -1)
            if not 0 <= c < k:
                raise DataError(f"{path}:{lineno}: unknown class {name!r}")
            vec[c] = 1.0
        out[image_id] = vec
    return out


class VOCSegmentation(Dataset):
    """VOC images with segmentation masks (where they exist), image-level labels and boxes.

    Item: ``{"image": Image uint8 (3, H, W), "mask": Mask uint8 (H, W) with 0 = background, 1..K classes,
    255 = ignore (None for ids without a SegmentationClass[Aug] PNG), "labels": float (K,) multi-hot,
    "boxes": BoundingBoxes XYXY (N, 4) 0-based inclusive, "box_labels": int64 (N,) in 0..K-1,
    "image_id": str, "orig_size": (H, W)}``. ``class_names`` excludes the background.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        split: str,
        transforms: Callable | None = None,
        with_xml: bool = True,
        label_list: str | Path | None = None,
        class_names: list[str] | tuple[str, ...] = VOC_CLASSES,
        skip_corrupt: bool = False,
    ) -> None:
        self.root = Path(root)
        self.transforms = transforms
        self.with_xml = with_xml
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.split_file, ids = read_split(self.root, split)
        self.labels_table = load_label_list(Path(label_list), self.class_names) if label_list else None
        self.skipped = 0
        if skip_corrupt:
            keep = [
                x
                for x in ids
                if (self.root / "JPEGImages" / f"{x}.jpg").is_file()
                and (not with_xml or (self.root / "Annotations" / f"{x}.xml").is_file())
            ]
            self.skipped = len(ids) - len(keep)
            if self.skipped:
                print(f"lowlabel: skipped {self.skipped} ids of {self.split_file} without image/XML", file=sys.stderr)
            ids = keep
        self.image_ids: list[str] = ids

    def __len__(self) -> int:
        return len(self.image_ids)

    def mask_file(self, image_id: str) -> Path | None:
        for folder in ("SegmentationClass", "SegmentationClassAug"):
            p = self.root / folder / f"{image_id}.png"
            if p.is_file():
                return p
        return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        arr = load_rgb(self.root / "JPEGImages" / f"{image_id}.jpg")
        hw = (arr.shape[0], arr.shape[1])
        mask_path = self.mask_file(image_id)
        mask = None
        if mask_path is not None:
            m = load_index_png(mask_path)
            if m.shape != hw:
                raise DataError(f"{mask_path}: mask size {m.shape} differs from image size {hw}")
            bad = np.setdiff1d(np.unique(m), np.r_[np.arange(self.num_classes + 1), 255])
            if bad.size:
                raise DataError(f"{mask_path}: unknown class index {int(bad[0])} in mask")
            mask = tv_tensors.Mask(torch.from_numpy(m.copy()))
        boxes, box_labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        if self.with_xml:
            boxes, box_labels, _, _ = parse_voc_objects(self.root / "Annotations" / f"{image_id}.xml", self.class_names)
        labels = self._image_labels(image_id, box_labels, mask)
        target = {
            "mask": mask,
            "labels": torch.from_numpy(labels),
            "boxes": to_boxes(boxes, hw),
            "box_labels": torch.from_numpy(box_labels),
            "image_id": image_id,
            "orig_size": hw,
        }
        if self.transforms is not None:
            image, target = self.transforms(to_image(arr), target)
        else:
            image = to_image(arr)
        return {"image": image, **target}

    def _image_labels(self, image_id: str, box_labels: np.ndarray, mask: tv_tensors.Mask | None) -> np.ndarray:
        vec = np.zeros(self.num_classes, np.float32)
        if self.labels_table is not None:
            if image_id not in self.labels_table:
                raise DataError(f"label list has no entry for image id {image_id!r}")
            return self.labels_table[image_id].astype(np.float32)
        if self.with_xml:
            vec[box_labels] = 1.0
        elif mask is not None:
            present = np.unique(mask.numpy())
            present = present[(present > 0) & (present != 255)]
            vec[present - 1] = 1.0
        else:
            raise DataError(f"{image_id}: no image-level labels (no XML, label list or mask)")
        return vec
