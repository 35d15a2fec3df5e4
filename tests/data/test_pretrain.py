"""ShapesWorld pretrain/: the ImageNet layout, determinism, the category table, and on-demand generation into
the cache without touching the other folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lowlabel.data import resolve_root
from lowlabel.data.imagenet import index_split
from lowlabel.data.synth import generate
from lowlabel.data.synth.config import PretrainConfig, get_preset
from lowlabel.data.synth.pretrain_task import COLOUR_RANGES, OUTLINES, TEXTURES, category_names, render_image


def test_layout_and_labels(tmp_path: Path) -> None:
    generate(tmp_path / "sw", preset="tiny", seed=0, kinds=["pretrain"], workers=1)
    root = tmp_path / "sw" / "pretrain"
    names = category_names()
    assert len(names) == len(OUTLINES) * len(TEXTURES) * len(COLOUR_RANGES) == 100 and names == sorted(names)
    assert (root / "classes.txt").read_text().split() == names
    cfg = get_preset("tiny").pretrain
    train, val = index_split(root, "train"), index_split(root, "val")
    assert len(train.samples) == 100 * cfg.train_per_class and len(val.samples) == 100 * cfg.val_per_class
    assert all(path.parent.name == names[label] for path, label in train.samples + val.samples)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", preset="tiny", seed=3, kinds=["pretrain"], workers=1)
    b = generate(tmp_path / "b", preset="tiny", seed=3, kinds=["pretrain"], workers=2)
    c = generate(tmp_path / "c", preset="tiny", seed=4, kinds=["pretrain"], workers=1)
    assert a["digest"] == b["digest"] and a["files"] == b["files"]
    assert a["digest"] != c["digest"]


def test_the_object_fills_a_good_part_of_the_image_and_is_mostly_visible() -> None:
    """Whole objects, never a sliver: the visible mask covers at least 5 % of the image in every draw (thin rings
    and crosses at the smallest scale cover about 8 %)."""
    cfg = PretrainConfig()
    for i, name in enumerate(category_names()):
        image, visible = render_image(np.random.default_rng([9, i]), name, cfg)
        assert image.dtype == np.uint8 and image.shape[:2] == visible.shape
        assert visible.mean() > 0.05, name


def test_on_demand_kind_is_added_to_the_cache_and_leaves_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOWLABEL_CACHE", str(tmp_path / "cache"))
    wsol = resolve_root("synth:tiny", "wsol")
    folder = wsol.parent
    assert not (folder / "pretrain").exists()  # first use generates the five default kinds only
    before = json.loads((folder / "manifest.json").read_text())["files"]
    pretrain = resolve_root("synth:tiny", "pretrain")
    assert pretrain == folder / "pretrain" and (pretrain / "classes.txt").is_file()
    after = json.loads((folder / "manifest.json").read_text())["files"]
    assert {k: v for k, v in after.items() if not k.startswith("pretrain/")} == before
    assert any(k.startswith("pretrain/") for k in after)
    assert resolve_root("synth:tiny", "pretrain") == pretrain  # cached now: nothing regenerated
