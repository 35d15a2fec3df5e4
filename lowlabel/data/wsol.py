"""wsolevaluation metadata reader (CUB-200-2011, ImageNet-1K, OpenImages30k, ShapesWorld).

A split's metadata folder holds ``image_ids.txt`` (paths relative to ``data_root``), ``class_labels.txt``
(``id,label``), ``image_sizes.txt`` (``id,W,H``; OpenImages has none) and ``localization.txt``: either boxes
(``id,x0,y0,x1,y1``, one line per box, inclusive pixel corners) or, as in OpenImages, masks
(``id,mask_path,ignore_path``, paths relative to ``mask_root``; only an image's first line names the
ignore mask). :func:`read_wsol_metadata` is the one reader of that folder, for :class:`WSOLDataset` and for
``lowlabel score wsol`` (:mod:`lowlabel.metrics.scoring`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lowlabel.data.io import load_index_png, load_rgb, numbered_lines, read_lines, to_boxes, to_image
from lowlabel.errors import DataError


@dataclass
class WSOLMetadata:
    """One wsolevaluation split folder, as :func:`read_wsol_metadata` reads it.

    Attributes:
        split_dir: the folder.
        image_ids: ``image_ids.txt`` in file order (paths relative to the image root).
        labels: image id -> class index, for every image id.
        sizes: image id -> ``(W, H)``, as ``image_sizes.txt`` lists them (empty without that file: OpenImages).
        boxes: image id -> ``[[x0, y0, x1, y1], ...]`` inclusive corners in original pixels (box metadata).
        masks: image id -> instance mask paths relative to the mask root (mask metadata, one per line).
        ignore: image id -> ignore-mask path (only an image's first line names it; may be absent).
    """

    split_dir: Path
    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, list[list[float]]] = field(default_factory=dict)
    masks: dict[str, list[str]] = field(default_factory=dict)
    ignore: dict[str, str] = field(default_factory=dict)

    @property
    def has_masks(self) -> bool:
        return bool(self.masks)




def _fields(path: Path, lineno: int, line: str, known: set[str], n: int | None = None) -> list[str]:
    """The comma-separated fields of one line whose first field must be a known image id."""
    parts = [p.strip() for p in line.split(",")]
    if n is not None and len(parts) != n:
        raise DataError(f"{path}:{lineno}: expected {n} comma-separated fields, got {len(parts)}: {line!r}")
    if parts[0] not in known:
        raise DataError(f"{path}:{lineno}: image id {parts[0]!r} is not in image_ids.txt")
    return parts


def read_wsol_metadata(split_dir: str | Path, *, require_localization: bool = False) -> WSOLMetadata:
    """Read one wsolevaluation split folder; every problem is a :class:`DataError` naming the file and line.

    ``image_ids.txt`` and ``class_labels.txt`` (a label for every image) are required. ``image_sizes.txt`` and
    ``localization.txt`` are read when present: training splits may lack them, and OpenImages has no sizes.

    Args:
        split_dir: the split's metadata folder.
        require_localization: what scoring needs: a box or mask for every image, and for box metadata a size
            for every image (boxes are rescaled to the score-map side with it).
    """
    root = Path(split_dir)
    image_ids = [line for _, line in numbered_lines(root / "image_ids.txt")]
    known = set(image_ids)
    meta = WSOLMetadata(split_dir=root, image_ids=image_ids, labels={})
    path = root / "class_labels.txt"
    for no, line in numbered_lines(path):
        image_id, label = _fields(path, no, line, known, 2)
        try:
            meta.labels[image_id] = int(label)
        except ValueError:
            raise DataError(f"{path}:{no}: label {label!r} is not an integer") from None
    missing = [x for x in image_ids if x not in meta.labels]
    if missing:
        raise DataError(f"{path}: no label for image id {missing[0]!r} ({len(missing)} missing)")
    path = root / "image_sizes.txt"
    if path.is_file():
        for no, line in numbered_lines(path):
            image_id, w, h = _fields(path, no, line, known, 3)
            try:
                meta.sizes[image_id] = (int(w), int(h))
            except ValueError:
                raise DataError(f"{path}:{no}: size fields must be integers: {line!r}") from None
    path = root / "localization.txt"
    if path.is_file() or require_localization:
        _read_localization(path, meta, known)
    if require_localization:
        for image_id in image_ids:
            if image_id not in meta.boxes and image_id not in meta.masks:
                raise DataError(f"{path}: no box or mask for image id {image_id!r}")
            if image_id in meta.boxes and image_id not in meta.sizes:
                raise DataError(f"{root / 'image_sizes.txt'}: no size for image id {image_id!r} (boxes need it)")
    return meta


def _read_localization(path: Path, meta: WSOLMetadata, known: set[str]) -> None:
    """Boxes ``id,x0,y0,x1,y1`` or masks ``id,mask_path,ignore_path`` (one line per box or instance mask)."""
    for no, line in numbered_lines(path):
        parts = _fields(path, no, line, known)
        if len(parts) == 5:
            try:
                box = [float(v) for v in parts[1:]]
            except ValueError:
                raise DataError(f"{path}:{no}: box coordinates must be numbers: {line!r}") from None
            if box[2] < box[0] or box[3] < box[1]:
                raise DataError(f"{path}:{no}: box has x1 < x0 or y1 < y0: {line!r}")
            meta.boxes.setdefault(parts[0], []).append(box)
        elif len(parts) == 3 and not parts[1].replace(".", "").isdigit():  # a number is a cut box line
            meta.masks.setdefault(parts[0], []).append(parts[1])
            if parts[2] and parts[0] not in meta.ignore:
                meta.ignore[parts[0]] = parts[2]
        else:
            raise DataError(f"{path}:{no}: expected 'id,x0,y0,x1,y1' or 'id,mask_path,ignore_path', got {line!r}")


class WSOLDataset(Dataset):
    """Images with an image-level class label and (for val/test) boxes or masks.

    Item: ``{"image": tv_tensors.Image uint8 (3, H, W), "label": int, "image_id": str,
    "boxes": BoundingBoxes XYXY (N, 4) in original pixels (inclusive corners, as in the metadata; N = 0
    for mask metadata), "orig_size": (H, W)}``. ``transforms(image, target)`` (torchvision v2 style)
    moves ``image`` and ``boxes`` together; ``orig_size`` stays the original size. The metadata is read by
    :func:`read_wsol_metadata` (``self.meta``).
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
        self.meta = read_wsol_metadata(self.metadata_dir)
        self.image_ids: list[str] = list(self.meta.image_ids)
        self.labels: dict[str, int] = self.meta.labels
        self.sizes: dict[str, tuple[int, int]] = {x: (h, w) for x, (w, h) in self.meta.sizes.items()}  # (H, W)
        self.boxes: dict[str, list[list[float]]] = {x: self.meta.boxes.get(x, []) for x in self.image_ids}
        self.masks: dict[str, tuple[list[str], str | None]] = {
            x: (paths, self.meta.ignore.get(x)) for x, paths in self.meta.masks.items()
        }
        self.mask_root = Path(mask_root) if mask_root is not None else self._default_mask_root()
        names_file = self.metadata_dir.parent / "class_names.txt"
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
