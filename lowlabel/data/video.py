"""Unlabeled video for self-supervised correspondence: ``.mp4`` (and other containers) through PyAV, or
folders of frames (``<video>/00000.jpg ...``, as Kinetics/YouTube-VOS frame dumps and DAVIS JPEGImages)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from lowlabel.data.io import load_rgb
from lowlabel.errors import DataError

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
FRAME_EXTS = (".jpg", ".jpeg", ".png")


def list_videos(root: str | Path) -> list[Path]:
    """Video files and frame folders under ``root`` (recursively), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: video folder not found")
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    folders = {p.parent for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FRAME_EXTS}
    return sorted(files) + sorted(folders)


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTS)


def read_video(path: str | Path, indices: list[int] | None = None) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of a video file or frame folder (only ``indices`` when given, in that order)."""
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        chosen = files if indices is None else [files[i] for i in indices]
        return np.stack([load_rgb(p) for p in chosen])
    import av

    wanted = None if indices is None else set(indices)
    last = None if indices is None else max(indices)
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if wanted is None or i in wanted:
                    frames[i] = frame.to_ndarray(format="rgb24")
                if last is not None and i >= last:
                    break
    except (av.error.FFmpegError, OSError) as e:
        raise DataError(f"{path}: unreadable video ({e})") from None
    if not frames:
        raise DataError(f"{path}: no decodable video frames")
    order = sorted(frames) if indices is None else indices
    missing = [i for i in order if i not in frames]
    if missing:
        raise DataError(f"{path}: frame {missing[0]} requested but the video has {len(frames)} decodable frames")
    return np.stack([frames[i] for i in order])


def count_frames(path: Path) -> int:
    if path.is_dir():
        return len(frame_files(path))
    import av

    try:
        with av.open(str(path)) as container:
            n = container.streams.video[0].frames
            return n if n > 0 else sum(1 for _ in container.decode(video=0))
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise DataError(f"{path}: unreadable video ({e})") from None


class VideoClips(Dataset):
    """Random frame tuples from unlabeled videos (one item per video and ``samples_per_video``).

    Item: ``{"frames": tv_tensors.Video uint8 (num_frames, 3, H, W), "video": str (path relative to root),
    "indices": list[int]}``: increasing frame indices with gaps in ``[min_gap, max_gap]``, drawn with
    ``torch``'s generator (seed it, or the DataLoader worker seed, for reproducibility).
    """

    def __init__(
        self,
        *,
        root: str | Path,
        num_frames: int = 2,
        min_gap: int = 1,
        max_gap: int = 5,
        samples_per_video: int = 1,
        transforms: Callable | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        if num_frames < 1 or not 0 <= min_gap <= max_gap:
            raise ValueError(
                f"need num_frames >= 1 and 0 <= min_gap <= max_gap, got {num_frames}, {min_gap}, {max_gap}"
            )
        self.root = Path(root)
        self.num_frames, self.min_gap, self.max_gap = num_frames, min_gap, max_gap
        self.samples_per_video, self.transforms = samples_per_video, transforms
        self.videos: list[Path] = []
        self.lengths: list[int] = []
        skipped = 0
        for v in list_videos(self.root):
            try:
                n = count_frames(v)
            except DataError:
                if not skip_corrupt:
                    raise
                skipped += 1
                continue
            if n < 1 + (num_frames - 1) * max(min_gap, 1) and num_frames > 1:
                if not skip_corrupt:
                    raise DataError(f"{v}: {n} frames, too short for {num_frames} frames with gap >= {min_gap}")
                skipped += 1
                continue
            self.videos.append(v)
            self.lengths.append(n)
        if skipped:
            print(f"lowlabel: skipped {skipped} corrupt or too short videos under {self.root}", file=sys.stderr)
        self.skipped = skipped
        if not self.videos:
            raise DataError(f"{self.root}: no usable videos (.mp4 files or frame folders)")

    def __len__(self) -> int:
        return len(self.videos) * self.samples_per_video

    def sample_indices(self, n: int) -> list[int]:
        gaps = [int(torch.randint(self.min_gap, self.max_gap + 1, ()).item()) for _ in range(self.num_frames - 1)]
        span = sum(gaps)
        while span > n - 1:  # shrink gaps for short videos, keeping them >= min_gap
            k = int(np.argmax(gaps))
            gaps[k] -= 1
            span -= 1
        start = int(torch.randint(0, n - span, ()).item())
        return [start + sum(gaps[:i]) for i in range(self.num_frames)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        v = index // self.samples_per_video
        indices = self.sample_indices(self.lengths[v])
        frames = tv_tensors.Video(torch.from_numpy(read_video(self.videos[v], indices)).permute(0, 3, 1, 2))
        if self.transforms is not None:
            frames = self.transforms(frames)
        return {"frames": frames, "video": self.videos[v].relative_to(self.root).as_posix(), "indices": indices}
