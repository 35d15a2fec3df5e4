"""Unpaired domain folders (CUT-style ``trainA/ trainB/ testA/ testB``) and detection folders with COCO-JSON, VOC-XML
or KITTI boxes (Cityscapes and Foggy Cityscapes with COCO boxes, Sim10k's VOC XML, KITTI's own label files)."""

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


def list_images(folder: str | Path, *, suffix: str = "") -> list[Path]:
    """Image files under ``folder`` (recursively, sorted), only those whose name ends with ``suffix`` when it is given;
    ``DataError`` when the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    files = io.list_images(folder, suffixes=IMAGE_EXTS)
    if suffix:
        files = [p for p in files if p.name.endswith(suffix)]
        if not files:
            raise DataError(f"{folder}: no image file name ends with {suffix!r}")
    return files


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class UnpairedImages(Dataset):
    """Images of two domains without correspondence (CUT's unaligned dataset).

    Item ``i``: ``{"a": Image uint8, "b": Image uint8, "a_path": str, "b_path": str}`` with ``a = A[i % |A|]`` and
    ``b`` drawn uniformly from B with ``torch``'s generator (or ``B[i % |B|]`` when ``serial=True``).
    ``transforms`` is applied to each image separately. ``suffix_a``/``suffix_b`` keep only the files of a folder
    whose names end so (Foggy Cityscapes keeps three fog densities side by side: ``_foggy_beta_0.02.png``).
    """

    def __init__(
        self, *, dir_a: str | Path, dir_b: str | Path, transforms: Callable | None = None, serial: bool = False,
        suffix_a: str = "", suffix_b: str = "",
    ) -> None:
        self.a = list_images(dir_a, suffix=suffix_a)  # each DataError when empty
        self.b = list_images(dir_b, suffix=suffix_b)
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
    """Images with boxes from a COCO JSON file, a folder of VOC XML files or a folder of KITTI label files.

    Annotation formats, told apart by ``annotations``:

    * a ``.json`` file: COCO instances; ``file_name`` relative to ``image_dir`` (Cityscapes converted by
      cityscapesscripts or mmdet's converter: ``<city>/<city>_<seq>_<frame>_leftImg8bit.png``);
    * a folder holding ``.xml`` files: one VOC XML per image, ``<stem>.xml`` (Sim10k ships so);
    * a folder holding ``.txt`` files: KITTI's object labels, ``<stem>.txt`` per image (``training/label_2``), one
      object a line ``type truncated occluded alpha left top right bottom h w l x y z rotation_y``; ``DontCare``
      regions are no class and are dropped.

    Item: ``{"image": Image uint8, "boxes": BoundingBoxes XYXY (N, 4) with exclusive extents (COCO
    ``[x, y, x + w, y + h]``; VOC ``[xmin - 1, ymin - 1, xmax, ymax]``; KITTI's 0-based corners
    ``[left, top, right + 1, bottom + 1]``), "labels": int64 (N,) into ``class_names``, "difficult": bool (N,),
    "iscrowd": bool (N,), "image_id": str | int, "file_name": str (the annotated name, relative to ``image_dir``),
    "orig_size": (H, W)}``. ``difficult`` marks the boxes the scorers ignore (VOC's ``<difficult>1``, COCO's
    ``iscrowd``); ``iscrowd`` marks COCO's crowd regions, which detectors do not train on either (KITTI: none).

    Args:
        image_dir: the images (searched recursively for VOC and KITTI).
        annotations: the COCO file or the VOC/KITTI label folder.
        class_names: VOC/KITTI label order (default: every class the label files name, sorted).
        file_suffix: only image files whose name ends so ("" = all).
        annotated_suffix: the annotations name each image with this ending in place of ``file_suffix`` (Foggy
            Cityscapes under Cityscapes' boxes: ``_leftImg8bit.png`` for the files ending
            ``_leftImg8bit_foggy_beta_0.02.png``); "" = the annotations name the files themselves.
        skip_corrupt: VOC/KITTI: leave out images without a label file instead of failing on them.
    """

    def __init__(
        self,
        *,
        image_dir: str | Path,
        annotations: str | Path,
        class_names: list[str] | None = None,
        transforms: Callable | None = None,
        skip_corrupt: bool = False,
        file_suffix: str = "",
        annotated_suffix: str = "",
    ) -> None:
        if annotated_suffix and not file_suffix:
            raise ValueError("annotated_suffix needs file_suffix (the ending the image files have instead)")
        self.image_dir, self.transforms = Path(image_dir), transforms
        self.file_suffix, self.annotated_suffix = file_suffix, annotated_suffix
        ann = Path(annotations)
        self.coco: COCODetection | None = None
        if ann.suffix == ".json":
            self.coco = COCODetection(image_dir=image_dir, ann_file=ann, skip_corrupt=skip_corrupt)
            self.class_names = self.coco.class_names
            self._select_coco(ann)
            return
        if not ann.is_dir():
            raise DataError(f"{ann}: expected a COCO .json file or a folder of VOC .xml or KITTI .txt files")
        self.label_dir = ann
        self.kind = "voc" if any(ann.glob("*.xml")) else "kitti" if any(ann.glob("*.txt")) else ""
        if not self.kind:
            raise DataError(f"{ann}: no VOC .xml or KITTI .txt label files")
        images = list_images(image_dir, suffix=file_suffix)
        self.items = [p for p in images if self.label_file(p).is_file() or not skip_corrupt]
        skipped = len(images) - len(self.items)
        if skipped:
            print(f"lowlabel: skipped {skipped} images of {image_dir} without a label file", file=sys.stderr)
        self.class_names = list(class_names) if class_names else self._scan_classes()

    def annotated_name(self, name: str) -> str:
        """The name the annotations give the image file ``name`` (``name`` itself without ``annotated_suffix``)."""
        if self.annotated_suffix and name.endswith(self.file_suffix):
            return name[: len(name) - len(self.file_suffix)] + self.annotated_suffix
        return name

    def _file_of(self, annotated: str) -> str | None:
        """The image file an annotated name refers to, None when it is not one of ``file_suffix``'s images."""
        if self.annotated_suffix:
            if not annotated.endswith(self.annotated_suffix):
                return None
            return annotated[: len(annotated) - len(self.annotated_suffix)] + self.file_suffix
        return annotated if annotated.endswith(self.file_suffix) else None

    def _select_coco(self, ann: Path) -> None:
        """Restrict and rename the COCO images by the suffixes (the annotated name is kept for the items)."""
        assert self.coco is not None
        self._annotated: dict[int, str] = {}
        if not self.file_suffix:
            return
        keep = []
        for image_id in self.coco.ids:
            info = self.coco.images[image_id]
            file = self._file_of(str(info["file_name"]))
            if file is not None:
                self._annotated[image_id] = str(info["file_name"])
                info["file_name"] = file
                keep.append(image_id)
        if not keep:
            wanted = self.annotated_suffix or self.file_suffix
            raise DataError(f"{ann}: no image file_name ends with {wanted!r}")
        self.coco.ids = keep

    def label_file(self, image: Path) -> Path:
        """The VOC XML or KITTI text file of ``image`` (named by its annotated stem)."""
        stem = Path(self.annotated_name(image.name)).stem
        return self.label_dir / f"{stem}.{'xml' if self.kind == 'voc' else 'txt'}"

    def _scan_classes(self) -> list[str]:
        names: set[str] = set()
        if self.kind == "voc":
            for p in sorted(self.label_dir.glob("*.xml")):
                names.update((o.findtext("name") or "").strip() for o in read_xml(p).iter("object"))
        else:
            for p in sorted(self.label_dir.glob("*.txt")):
                names.update(line.split()[0] for line in p.read_text().splitlines() if line.strip())
            names.discard(KITTI_IGNORE)
        return sorted(n for n in names if n)

    def file_names(self) -> list[str]:
        """The annotated name of every item, in order, without reading images."""
        if self.coco is not None:
            return [self._annotated.get(i, str(self.coco.images[i]["file_name"])) for i in self.coco.ids]
        return [self.annotated_name(str(p.relative_to(self.image_dir))) for p in self.items]

    def __len__(self) -> int:
        return len(self.coco) if self.coco is not None else len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.coco is not None:
            item = self.coco[index]
            out = {k: item[k] for k in ("image", "boxes", "labels", "iscrowd", "image_id", "file_name", "orig_size")}
            out["difficult"] = out["iscrowd"].clone()
            out["file_name"] = self._annotated.get(self.coco.ids[index], out["file_name"])
            if self.transforms is not None:
                image, target = self.transforms(out.pop("image"), out)
                out = {"image": image, **target}
            return out
        path = self.items[index]
        arr = load_rgb(path)
        hw = (arr.shape[0], arr.shape[1])
        if self.kind == "voc":
            boxes, labels, difficult, _ = parse_voc_objects(self.label_file(path), self.class_names)
        else:
            boxes, labels = parse_kitti_labels(self.label_file(path), self.class_names)
            difficult = np.zeros(len(labels), bool)
        boxes = boxes + np.asarray([0, 0, 1, 1], np.float32)  # 0-based inclusive -> exclusive extents
        image = to_image(arr)
        name = self.annotated_name(str(path.relative_to(self.image_dir)))
        target = {
            "boxes": to_boxes(boxes, hw),
            "labels": torch.from_numpy(labels),
            "difficult": torch.from_numpy(difficult),
            "iscrowd": torch.zeros(len(labels), dtype=torch.bool),
            "image_id": Path(name).stem,
            "file_name": name,
            "orig_size": hw,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return {"image": image, **target}


KITTI_IGNORE = "DontCare"  # KITTI's unlabelled regions (not a class)


def parse_kitti_labels(path: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Objects of a KITTI label file: boxes (N, 4) 0-based inclusive xyxy float32 and labels (N,) into
    ``class_names``. ``DontCare`` lines are dropped; another class not in ``class_names`` is a ``DataError``.

    KITTI's devkit (readme.txt): 15 values a line, the 5th to 8th the 2D box ``left top right bottom`` in 0-based
    pixel coordinates; result files add a 16th, the score.
    """
    index = {n: i for i, n in enumerate(class_names)}
    boxes, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise DataError(f"{path}:{number}: expected 15 values (KITTI object label), found {len(fields)}")
        name = fields[0]
        if name == KITTI_IGNORE:
            continue
        if name not in index:
            raise DataError(f"{path}:{number}: unknown class {name!r} (known: {', '.join(class_names)})")
        try:
            box = [float(v) for v in fields[4:8]]
        except ValueError:
            raise DataError(f"{path}:{number}: malformed box {fields[4:8]}") from None
        if box[2] < box[0] or box[3] < box[1]:
            raise DataError(f"{path}:{number}: box {box} has right < left or bottom < top")
        boxes.append(box)
        labels.append(index[name])
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def shapesworld_domains(root: str | Path, split: str, **kwargs: Any) -> DetectionFolder:
    """A labelled split (``trainA``, ``testA``, ``testB``) of ShapesWorld's ``domains/`` folder."""
    root = Path(root)
    return DetectionFolder(image_dir=root / split, annotations=root / "annotations" / f"{split}.json", **kwargs)
