"""DAVIS-2017 reader (semi-supervised video object segmentation).

Layout (``root`` = ``DAVIS`` or ShapesWorld's ``davis/``)::

    JPEGImages/480p/<seq>/00000.jpg ...   Annotations/480p/<seq>/00000.png ...   ImageSets/2017/{train,val}.txt

Annotations are palette PNGs whose index is the object id (0 = background, 255 = void).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from lowlabel.data.io import load_index_png, load_rgb, read_lines
from lowlabel.errors import DataError
from lowlabel.structures import IGNORE_INDEX


class DAVIS2017(Dataset):
    """One item per sequence.

    Item: ``{"name": str, "frames": tv_tensors.Video uint8 (T, 3, H, W), "masks": tv_tensors.Mask uint8
    (T, H, W) object ids (255 where a frame has no annotation file, and DAVIS void), "has_mask": bool (T,),
    "num_objects": int (max id in the first annotation), "frame_names": list[str]}``.
    ``transforms(frames, {"masks": masks})`` (v2 style) moves frames and masks together.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        split: str = "val",
        resolution: str = "480p",
        year: str = "2017",
        transforms: Callable | None = None,
        sequences: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.resolution = resolution
        self.transforms = transforms
        self.sequences = (
            sequences if sequences is not None else read_lines(self.root / "ImageSets" / year / f"{split}.txt")
        )
        for seq in self.sequences:
            if not (self.root / "JPEGImages" / resolution / seq).is_dir():
                raise DataError(f"{self.root / 'JPEGImages' / resolution / seq}: sequence folder not found")

    def __len__(self) -> int:
        return len(self.sequences)

    def frame_paths(self, seq: str) -> list[Path]:
        return sorted((self.root / "JPEGImages" / self.resolution / seq).glob("*.jpg"))

    def annotation_path(self, seq: str, frame_name: str) -> Path:
        return self.root / "Annotations" / self.resolution / seq / f"{frame_name}.png"

    def first_mask(self, seq: str) -> np.ndarray:
        """(H, W) uint8 object ids of the first frame (the semi-supervised input)."""
        return load_index_png(self.annotation_path(seq, self.frame_paths(seq)[0].stem))

    def palette(self, seq: str) -> list[int] | None:
        with Image.open(self.annotation_path(seq, self.frame_paths(seq)[0].stem)) as im:
            return im.getpalette()

    def _check_frames(self, seq: str, paths: list[Path]) -> None:
        """Numbered frames must be consecutive, and every annotation must have its frame (one-line errors)."""
        stems = [p.stem for p in paths]
        if all(stem.isdigit() for stem in stems):
            numbers = [int(stem) for stem in stems]
            for before, after in zip(numbers, numbers[1:]):
                if after != before + 1:
                    width = len(stems[0])
                    raise DataError(f"{paths[0].parent / f'{before + 1:0{width}d}.jpg'}: frame missing (the sequence "
                                    f"jumps from {stems[numbers.index(before)]} to {stems[numbers.index(after)]})")
        folder = self.root / "Annotations" / self.resolution / seq
        if folder.is_dir():
            known = set(stems)
            for ann in sorted(folder.glob("*.png")):
                if ann.stem not in known:
                    raise DataError(f"{ann}: annotation of a frame that does not exist "
                                    f"({self.root / 'JPEGImages' / self.resolution / seq / (ann.stem + '.jpg')})")

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = self.sequences[index]
        paths = self.frame_paths(seq)
        if not paths:
            raise DataError(f"{self.root / 'JPEGImages' / self.resolution / seq}: no .jpg frames")
        self._check_frames(seq, paths)
        frames = np.stack([load_rgb(p) for p in paths])
        t, h, w = frames.shape[:3]
        masks = np.full((t, h, w), IGNORE_INDEX, np.uint8)
        has = np.zeros(t, bool)
        for i, p in enumerate(paths):
            a = self.annotation_path(seq, p.stem)
            if a.is_file():
                m = load_index_png(a)
                if m.shape != (h, w):
                    raise DataError(f"{a}: annotation size {m.shape} differs from frame size {(h, w)}")
                masks[i], has[i] = m, True
        if not has[0]:
            raise DataError(f"{self.annotation_path(seq, paths[0].stem)}: first-frame annotation missing")
        first = masks[0][masks[0] != IGNORE_INDEX]
        video = tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2))
        target = {"masks": tv_tensors.Mask(torch.from_numpy(masks))}
        if self.transforms is not None:
            video, target = self.transforms(video, target)
        return {
            "name": seq,
            "frames": video,
            "masks": target["masks"],
            "has_mask": torch.from_numpy(has),
            "num_objects": int(first.max()) if first.size else 0,
            "frame_names": [p.stem for p in paths],
        }
