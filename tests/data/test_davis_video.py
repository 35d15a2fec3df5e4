"""DAVIS-2017 frames/annotations and unlabeled video (.mp4 through PyAV, frame folders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlabel.data.davis import DAVIS2017
from lowlabel.data.synth.config import get_preset
from lowlabel.data.video import VideoClips, count_frames, list_videos, read_video
from lowlabel.errors import DataError
from lowlabel.structures import voc_palette


def test_davis_round_trip(quick_root: Path) -> None:
    cfg = get_preset("quick").davis
    root = quick_root / "davis"
    assert len(DAVIS2017(root=root, split="train")) == cfg.num_train_seqs
    ds = DAVIS2017(root=root, split="val")
    assert len(ds) == cfg.num_val_seqs
    for k in range(len(ds)):
        item = ds[k]
        t = cfg.num_frames
        assert item["frames"].shape == (t, 3, *cfg.size) and item["masks"].shape == (t, *cfg.size)
        assert bool(item["has_mask"].all()) and len(item["frame_names"]) == t
        ids = set(item["masks"].unique().tolist())
        assert 1 <= item["num_objects"] <= cfg.objects[1] and ids <= set(range(cfg.objects[1] + 1))
        first = np.asarray(Image.open(ds.annotation_path(item["name"], "00000")))
        assert np.array_equal(first, ds.first_mask(item["name"])) and np.array_equal(first, item["masks"][0].numpy())
        assert ds.palette(item["name"])[:60] == voc_palette()[:60]
    # objects move: the first and last masks differ
    item = ds[0]
    assert (item["masks"][0] != item["masks"][-1]).any()


def test_davis_missing_first_annotation(quick_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "davis"
    shutil.copytree(quick_root / "davis", root, ignore=shutil.ignore_patterns("clips"))
    ds = DAVIS2017(root=root, split="val")
    (root / "Annotations" / "480p" / ds.sequences[0] / "00000.png").unlink()
    with pytest.raises(DataError, match="first-frame annotation missing"):
        ds[0]
    (root / "ImageSets" / "2017" / "val.txt").write_text("no-such-seq\n")
    with pytest.raises(DataError, match="no-such-seq"):
        DAVIS2017(root=root, split="val")


def test_mp4_clips_decode_with_pyav(quick_root: Path) -> None:
    cfg = get_preset("quick").davis
    clips = quick_root / "davis" / "clips"
    videos = list_videos(clips)
    assert len(videos) == cfg.num_clips and all(v.suffix == ".mp4" for v in videos)
    frames = read_video(videos[0])
    assert frames.shape == (cfg.clip_frames, *cfg.size, 3) and frames.dtype == np.uint8
    assert count_frames(videos[0]) == cfg.clip_frames
    some = read_video(videos[0], [5, 2])
    assert np.array_equal(some[0], frames[5]) and np.array_equal(some[1], frames[2])
    torch.manual_seed(0)
    ds = VideoClips(root=clips, num_frames=3, min_gap=1, max_gap=4)
    for k in range(len(ds)):
        item = ds[k]
        idx = item["indices"]
        assert item["frames"].shape == (3, 3, *cfg.size)
        assert all(1 <= b - a <= 4 for a, b in zip(idx, idx[1:])) and idx[-1] < cfg.clip_frames


def test_frame_folders_and_corrupt_video(quick_root: Path, tmp_path: Path) -> None:
    frames_root = quick_root / "davis" / "JPEGImages" / "480p"
    ds = VideoClips(root=frames_root, num_frames=2, max_gap=2)
    n_seq = len(list(frames_root.iterdir()))
    assert len(ds) == n_seq and ds[0]["frames"].shape[0] == 2
    bad = tmp_path / "v"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"not a video at all")
    shutil.copy(sorted((quick_root / "davis" / "clips").glob("*.mp4"))[0], bad / "good.mp4")
    with pytest.raises(DataError, match="broken.mp4"):
        VideoClips(root=bad)
    ok = VideoClips(root=bad, skip_corrupt=True)
    assert ok.skipped == 1 and len(ok) == 1


def _one_sequence(quick_root: Path, tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "davis"
    shutil.copytree(quick_root / "davis", root, ignore=shutil.ignore_patterns("clips"))
    seq = (root / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    return root, seq


def test_a_missing_frame_is_a_one_line_error(quick_root: Path, tmp_path: Path) -> None:
    root, seq = _one_sequence(quick_root, tmp_path)
    (root / "JPEGImages" / "480p" / seq / "00003.jpg").unlink()
    with pytest.raises(DataError, match=r"00003.jpg: frame missing \(the sequence jumps from 00002 to 00004\)") as e:
        DAVIS2017(root=root, split="val", sequences=[seq])[0]
    assert "\n" not in str(e.value)


def test_an_annotation_without_its_frame_and_a_wrong_size_mask_are_one_line_errors(quick_root: Path,
                                                                                  tmp_path: Path) -> None:
    root, seq = _one_sequence(quick_root, tmp_path)
    last = sorted((root / "JPEGImages" / "480p" / seq).glob("*.jpg"))[-1]
    shutil.copy(root / "Annotations" / "480p" / seq / "00000.png", root / "Annotations" / "480p" / seq / "00099.png")
    with pytest.raises(DataError, match="00099.png: annotation of a frame that does not exist"):
        DAVIS2017(root=root, split="val", sequences=[seq])[0]
    (root / "Annotations" / "480p" / seq / "00099.png").unlink()
    from lowlabel.data.io import save_palette_png

    save_palette_png(root / "Annotations" / "480p" / seq / "00000.png", np.zeros((5, 7), np.uint8))
    with pytest.raises(DataError, match=r"00000.png: annotation size \(5, 7\) differs from frame size"):
        DAVIS2017(root=root, split="val", sequences=[seq])[0]
    assert last.is_file()


def test_an_empty_video_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "empty.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="empty.mp4: unreadable video") as e:
        VideoClips(root=tmp_path / "v")
    assert "\n" not in str(e.value)
