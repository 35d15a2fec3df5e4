"""ShapesWorld generator: determinism, manifest, cache resolution and the difficulty knobs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lowlabel.data import parse_synth, resolve_root
from lowlabel.data.io import file_sha256
from lowlabel.data.synth import generate
from lowlabel.data.synth.config import ObjectStyle, SceneStyle, get_preset
from lowlabel.data.synth.manifest import verify_manifest
from lowlabel.data.synth.render import paint_object, pixel_grid, sample_object
from lowlabel.data.synth.scene import compose
from lowlabel.errors import UserError


def test_quick_is_byte_identical_across_runs_and_worker_counts(quick_root: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", preset="quick", seed=0, workers=1)
    first = json.loads((quick_root / "manifest.json").read_text())
    assert again["digest"] == first["digest"]
    assert again["files"] == first["files"]
    # the manifest's hashes are the files' real hashes (spot-check against an independent sha256)
    rel = sorted(first["files"])[::97]
    for r in rel:
        assert file_sha256(tmp_path / "again" / r) == first["files"][r]["sha256"]


def test_manifest_lists_every_file_and_records_seed(quick_root: Path) -> None:
    m = json.loads((quick_root / "manifest.json").read_text())
    on_disk = {p.relative_to(quick_root).as_posix() for p in quick_root.rglob("*") if p.is_file()}
    assert set(m["files"]) == on_disk - {"manifest.json", ".digest"}
    assert (m["seed"], m["preset"]) == (0, "quick")
    for kind in ("wsol", "voc", "davis", "coco", "domains"):
        assert any(f.startswith(kind + "/") for f in m["files"])


def test_other_seed_gives_other_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", preset="tiny", seed=0, kinds=["wsol"], workers=1)
    b = generate(tmp_path / "b", preset="tiny", seed=1, kinds=["wsol"], workers=1)
    assert a["digest"] != b["digest"]


def test_verify_manifest_names_changed_and_missing_files(tmp_path: Path) -> None:
    root = tmp_path / "t"
    generate(root, preset="tiny", seed=0, kinds=["voc"], workers=1)
    assert verify_manifest(root, full=True) == []
    victim = root / "voc" / "JPEGImages" / "2026_000001.jpg"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")  # same size, other bytes
    gone = root / "voc" / "Annotations" / "2026_000002.xml"
    gone.unlink()
    cheap = verify_manifest(root)
    assert any(str(gone) in p and "missing" in p for p in cheap) and not any(str(victim) in p for p in cheap)
    full = verify_manifest(root, full=True)
    assert any(str(victim) in p and "sha256" in p for p in full)


def test_resolve_root_generates_once_and_repairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOWLABEL_CACHE", str(tmp_path / "cache"))
    voc = resolve_root("synth:tiny", "voc")
    assert voc == tmp_path / "cache" / "shapesworld" / "tiny-seed0" / "voc"
    assert (voc / "ImageSets" / "Segmentation" / "train.txt").is_file()
    stamp = (voc.parent / "manifest.json").stat().st_mtime_ns
    assert resolve_root("synth:tiny:0", "wsol") == voc.parent / "wsol"
    assert (voc.parent / "manifest.json").stat().st_mtime_ns == stamp  # no regeneration
    shutil.rmtree(voc.parent / "wsol" / "masks")  # damaged cache -> regenerated
    assert (resolve_root("synth:tiny", "wsol") / "masks").is_dir()
    assert not [p for p in (tmp_path / "cache" / "shapesworld").iterdir() if ".tmp-" in p.name or ".stale-" in p.name]


def test_resolve_root_paths_and_errors(quick_root: Path, tmp_path: Path) -> None:
    assert resolve_root(quick_root, "coco") == quick_root / "coco"  # a ShapesWorld output folder
    assert resolve_root(tmp_path, "voc") == tmp_path  # a real dataset root is returned unchanged
    assert parse_synth("synth:full:3") == ("full", 3)
    for bad in ("synth:", "synth:quick:x", "synth:a:b:c"):
        with pytest.raises(UserError):
            parse_synth(bad)
    with pytest.raises(UserError, match="kind"):
        resolve_root("synth:tiny", "imagenet")
    with pytest.raises(ValueError, match="preset"):
        resolve_root("synth:huge", "voc")
    with pytest.raises(UserError, match="does not exist"):
        resolve_root(tmp_path / "nope", "voc")


def test_marking_covers_the_configured_share_of_the_body() -> None:
    yy, xx = pixel_grid(128, 128)
    for frac in (0.1, 0.2, 0.35):
        style = ObjectStyle(marking_frac=frac, marking_dropout=0.0)
        for i in range(5):
            rng = np.random.default_rng(i)
            spec = sample_object(rng, i, style, 64.0, 64.0, 40.0, 180.0)
            img = np.zeros((128, 128, 3), np.float32)
            painted = paint_object(img, spec, yy, xx)
            share = painted.marking.sum() / painted.body.sum()
            assert abs(share - frac) < 0.03, (frac, share)
            assert not (painted.marking & ~painted.body).any()


def test_context_bias_and_distractor_knobs() -> None:
    obj = ObjectStyle()
    always = SceneStyle(context_prob=1.0, distractors=(0, 0))
    never = SceneStyle(context_prob=0.0, distractors=(0, 0))
    rng = np.random.default_rng(0)
    assert all(compose(rng, [3], obj, always).habitat == 3 for _ in range(5))
    assert all(compose(rng, [3], obj, never).habitat is None for _ in range(5))
    # with occluding distractors in front, the visible mask loses pixels of the amodal object
    occl = SceneStyle(distractors=(3, 3), occlusion_prob=1.0, context_prob=0.0)
    lost = [compose(np.random.default_rng(s), [1], obj, occl, min_visible=0.0).instances[0] for s in range(10)]
    assert any(inst.visible.sum() < (inst.marking.sum() / obj.marking_frac) * 0.95 for inst in lost)


def test_presets_are_ordered_by_size() -> None:
    tiny, quick, full = (get_preset(n) for n in ("tiny", "quick", "full"))
    assert tiny.wsol.num_train < quick.wsol.num_train < full.wsol.num_train
    assert full.wsol.num_train >= 2000 and full.davis.num_clips >= 100
    with pytest.raises(ValueError, match="marking_frac"):
        ObjectStyle(marking_frac=1.5)


def test_cli_synth_refuses_to_mix_into_existing_output(tmp_path: Path) -> None:
    from lowlabel.cli.main import main

    out = tmp_path / "o"
    assert main(["data", "synth", "--out", str(out), "--preset", "tiny", "--only", "wsol", "--workers", "1"]) == 0
    assert main(["data", "synth", "--out", str(out), "--preset", "tiny", "--only", "wsol"]) == 2
    assert os.path.isfile(out / "manifest.json")
