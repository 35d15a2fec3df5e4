"""Deterministic file writers: same arrays in, same bytes out (fixed encoder settings, no timestamps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lowlabel.data.io import save_palette_png

__all__ = ["save_gray_png", "save_jpeg", "save_mp4", "save_palette_png", "write_json", "write_lines"]

JPEG_QUALITY = 92


def save_jpeg(path: Path, rgb: np.ndarray) -> None:
    """(H, W, 3) uint8 -> baseline JPEG, 4:2:0, fixed quality, no EXIF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path, format="JPEG", quality=JPEG_QUALITY, optimize=False)


def save_gray_png(path: Path, arr: np.ndarray) -> None:
    """(H, W) uint8 -> 8-bit grayscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path, format="PNG")


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":"), sort_keys=False), encoding="utf-8")


def save_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Encode (H, W, 3) uint8 frames as H.264 (libx264, one thread, so the bytes are reproducible)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "20", "preset": "veryfast"}
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: h - h % 2, : w - w % 2]), format="rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
