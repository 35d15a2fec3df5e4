"""wsolevaluation metadata reader (CUB-200-2011, ImageNet-1K, OpenImages30k, ShapesWorld).

A split's metadata folder holds ``image_ids.txt`` (paths relative to ``data_root``), ``class_labels.txt``
(``id,label``), ``image_sizes.txt`` (``id,W,H``) and ``localization.txt``: either boxes
(``id,x0,y0,x1,y1``, one line per box, inclusive pixel corners) or, as in OpenImages, masks
(``id,mask_path,ignore_path``, paths relative to ``mask_root``; only an image's first line names the
ignore mask).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lowlabel.data.io import load_index_png, load_rgb, read_lines, to_boxes, to_image
from lowlabel.errors import DataError


def _split_line(path: Path, lineno: int, line: str, n: int | None = None) -> list[str]:
    parts = [p.strip() for p in line.split(",")]
    if n is not None and len(parts) != n:
        raise DataError(f"{path}:{lineno}: expected {n} comma-separated fields, got {len(parts)}: {line!r}")
    return parts


class WSOLDataset(Dataset):
    """Images with an image-level class label and (for val/test) boxes or masks.

    Item: ``{"image": tv_tensors.Image uint8 (3, H, W), "label": int, "image_id": str,
    "boxes": BoundingBoxes XYXY (N, 4) in original pixels (inclusive corners, as in the metadata; N = 0
    for mask metadata), "orig_size": (H, W)}``. ``transforms(image, target)`` (torchvision v2 style)
    moves ``image`` and ``boxes`` together; ``orig_size`` stays the original size.
    """

    def __init__(
        self,
        *,
        data_root: str | Path,
        metadata_dir: str | Path,
        transforms: Callable | None = None,
        mask_root: str | Path | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.data_root, self.metadata_dir = Path(data_root), Path(metadata_dir)
        self.transforms = transforms
        meta = self.metadata_dir
        self.image_ids: list[str] = read_lines(meta / "image_ids.txt")
        known = set(self.image_ids)
        self.labels: dict[str, int] = {}
        for i, line in enumerate(read_lines(meta / "class_labels.txt"), 1):
            image_id, label = _split_line(meta / "class_labels.txt", i, line, 2)
            if image_id not in known:
                raise DataError(f"{meta / 'class_labels.txt'}:{i}: image id {image_id!r} not in image_ids.txt")
            try:
                self.labels[image_id] = int(label)
            except ValueError:
                raise DataError(f"{meta / 'class_labels.txt'}:{i}: label {label!r} is not an integer") from None
        missing = [x for x in self.image_ids if x not in self.labels]
        if missing:
            raise DataError(
                f"{meta / 'class_labels.txt'}: no label for image id {missing[0]!r} ({len(missing)} missing)"
            )
        self.sizes = self._read_sizes(meta / "image_sizes.txt", known)
        self.boxes: dict[str, list[list[float]]] = {x: [] for x in self.image_ids}
        self.masks: dict[str, tuple[list[str], str | None]] = {}
        if (meta / "localization.txt").is_file():
            self._read_localization(meta / "localization.txt", known)
        self.mask_root = Path(mask_root) if mask_root is not None else self._default_mask_root()
        names_file = meta.parent / "class_names.txt"
        self.class_names: list[str] | None = read_lines(names_file) if names_file.is_file() else None
        self.num_classes = len(self.class_names) if self.class_names else max(self.labels.values()) + 1
        self.skipped = 0
        if skip_corrupt:
            keep = [x for x in self.image_ids if (self.data_root / x).is_file()]
            self.skipped = len(self.image_ids) - len(keep)
            if self.skipped:
                print(
                    f"lowlabel: skipped {self.skipped} image ids without a file under {self.data_root}", file=sys.stderr
                )
            self.image_ids = keep

    def _default_mask_root(self) -> Path | None:
        # wsolevaluation keeps masks next to the metadata: <root>/metadata/<DS>/<split> -> <root>/masks
        guess = self.metadata_dir.parent.parent.parent / "masks"
        return guess if guess.is_dir() else None

    @staticmethod
    def _read_sizes(path: Path, known: set[str]) -> dict[str, tuple[int, int]]:
        sizes: dict[str, tuple[int, int]] = {}
        if not path.is_file():
            return sizes
        for i, line in enumerate(read_lines(path), 1):
            image_id, w, h = _split_line(path, i, line, 3)
            if image_id not in known:
                raise DataError(f"{path}:{i}: image id {image_id!r} not in image_ids.txt")
            try:
                sizes[image_id] = (int(h), int(w))
            except ValueError:
                raise DataError(f"{path}:{i}: size fields must be integers: {line!r}") from None
        return sizes

    def _read_localization(self, path: Path, known: set[str]) -> None:
        for i, line in enumerate(read_lines(path), 1):
            parts = _split_line(path, i, line)
            if parts[0] not in known:
                raise DataError(f"{path}:{i}: image id {parts[0]!r} not in image_ids.txt")
            if len(parts) == 3 and not parts[1].replace(".", "").isdigit():  # mask line
                paths, ignore = self.masks.get(parts[0], ([], None))
                self.masks[parts[0]] = (paths + [parts[1]], ignore or (parts[2] or None))
            elif len(parts) == 5:
                try:
                    box = [float(v) for v in parts[1:]]
                except ValueError:
                    raise DataError(f"{path}:{i}: box coordinates must be numbers: {line!r}") from None
                if box[2] < box[0] or box[3] < box[1]:
                    raise DataError(f"{path}:{i}: box has x1 < x0 or y1 < y0: {line!r}")
                self.boxes[parts[0]].append(box)
            else:
                raise DataError(f"{path}:{i}: expected id,x0,y0,x1,y1 or id,mask_path,ignore_path: {line!r}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        arr = load_rgb(self.data_root / image_id)
        hw = (arr.shape[0], arr.shape[1])
        image = to_image(arr)
        target = {
            "boxes": to_boxes(self.boxes.get(image_id, []), hw),
            "label": self.labels[image_id],
            "image_id": image_id,
            "orig_size": hw,
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return {"image": image, **target}

    # ----- masks (OpenImages-style PxAP metadata) -----
    def has_masks(self) -> bool:
        return bool(self.masks)

    def mask_items(self) -> list[tuple[str, list[Path], Path | None]]:
        """``(image_id, [mask paths], ignore path or None)`` for every image with masks."""
        return [(x, *self._mask_paths(x)) for x in self.image_ids if x in self.masks]

    def _mask_paths(self, image_id: str) -> tuple[list[Path], Path | None]:
        if self.mask_root is None:
            raise DataError(f"{self.metadata_dir}: mask metadata but no mask_root given and no masks/ folder found")
        paths, ignore = self.masks[image_id]
        return [self.mask_root / p for p in paths], (self.mask_root / ignore if ignore else None)

    def mask_path(self, image_id: str) -> Path:
        """Path of the (first) instance mask of ``image_id``."""
        if image_id not in self.masks:
            raise DataError(f"{self.metadata_dir / 'localization.txt'}: no mask for image id {image_id!r}")
        return self._mask_paths(image_id)[0][0]

    def load_masks(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, ignore)``, both (H, W) bool at the masks' own size: the union of the instance masks,
        and the ignore region outside it (wsolevaluation's ``get_mask`` semantics)."""
        paths, ignore_path = self._mask_paths(image_id)
        mask = np.stack([load_index_png(p) > 0 for p in paths]).any(axis=0)
        ignore = load_index_png(ignore_path) > 0 if ignore_path is not None else np.zeros_like(mask)
        return mask, ignore & ~mask


def shapesworld_wsol(root: str | Path, split: str, *, masks: bool = False, **kwargs: Any) -> WSOLDataset:
    """The ShapesWorld ``wsol/`` folder ``root`` as a :class:`WSOLDataset` (``masks=True``: the PxAP metadata)."""
    root = Path(root)
    ds = "ShapesWorldMask" if masks else "ShapesWorld"
    return WSOLDataset(
        data_root=root / "images" / "ShapesWorld",
        metadata_dir=root / "metadata" / ds / split,
        mask_root=root / "masks",
        **kwargs,
    )
