"""``lowlabel data check <format> <root>``: validate a dataset layout and name every bad file.

Each checker returns a :class:`CheckReport` with counts, class names and one problem line per missing,
corrupt or mismatched file. Images are fully decoded (so truncated files are found) unless ``fast=True``,
which only checks that files exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lowlabel.data.io import load_index_png, load_rgb, parse_voc_objects, read_lines
from lowlabel.errors import DataError

FORMATS = ("wsol", "voc", "davis", "coco", "video", "domains", "imagenet", "cityscapes", "kitti", "sim10k")


@dataclass
class CheckReport:
    format: str
    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self, max_problems: int = 50) -> list[str]:
        out = [f"{self.format} dataset at {self.root}"]
        out += [f"  {k}: {v}" for k, v in self.counts.items()]
        if self.classes:
            out.append(f"  classes ({len(self.classes)}): {', '.join(self.classes)}")
        for p in self.problems[:max_problems]:
            out.append(f"problem: {p}")
        if len(self.problems) > max_problems:
            out.append(f"... and {len(self.problems) - max_problems} more problems")
        out.append("OK" if self.ok else f"{len(self.problems)} problem(s) found")
        return out


def _image_hw(path: Path, fast: bool, report: CheckReport) -> tuple[int, int] | None:
    """Decoded (H, W) of an image, or None after recording the problem."""
    if not path.is_file():
        report.problems.append(f"{path}: image file not found")
        return None
    try:
        if fast:
            with Image.open(path) as im:
                return im.size[1], im.size[0]
        arr = load_rgb(path)
        return arr.shape[0], arr.shape[1]
    except (DataError, OSError) as e:
        report.problems.append(str(e) if isinstance(e, DataError) else f"{path}: unreadable image ({e})")
        return None


def _guard(report: CheckReport, fn: Callable[[], object]) -> object | None:
    try:
        return fn()
    except DataError as e:
        report.problems.append(str(e))
        return None


def check_wsol(root: Path, *, fast: bool = False, data_root: Path | None = None) -> CheckReport:
    """``root`` holds ``metadata/<DS>/<split>/``.

    Images are under ``data_root``, ``root/images/<DS>`` or ``root/dataset/<DS>``.
    """
    from lowlabel.data.wsol import WSOLDataset

    rep = CheckReport("wsol", root)
    splits = sorted(p for p in (root / "metadata").glob("*/*") if (p / "image_ids.txt").is_file())
    if not splits:
        rep.problems.append(f"{root / 'metadata'}: no <DS>/<split>/image_ids.txt found")
    for meta in splits:
        ds_name = meta.parent.name
        base = data_root or next(
            (c for c in (root / "images" / ds_name, root / "dataset" / ds_name) if c.is_dir()),
            root / "images" / "ShapesWorld",
        )
        ds = _guard(rep, lambda m=meta, b=base: WSOLDataset(data_root=b, metadata_dir=m))
        if ds is None:
            continue
        rep.counts[f"{ds_name}/{meta.name}"] = len(ds)
        if ds.class_names and not rep.classes:
            rep.classes = list(ds.class_names)
        for image_id in ds.image_ids:
            hw = _image_hw(ds.data_root / image_id, fast, rep)
            if hw is not None and image_id in ds.sizes and ds.sizes[image_id] != hw:
                rep.problems.append(
                    f"{meta / 'image_sizes.txt'}: {image_id} listed as {ds.sizes[image_id]}, image is {hw}"
                )
            for box in ds.boxes.get(image_id, []):
                if hw is not None and (box[0] < 0 or box[1] < 0 or box[2] >= hw[1] + 1 or box[3] >= hw[0] + 1):
                    rep.problems.append(f"{meta / 'localization.txt'}: box {box} of {image_id} outside image {hw}")
        if ds.masks:
            for image_id, paths, ignore in _guard(rep, ds.mask_items) or []:
                for p in [*paths, *([ignore] if ignore else [])]:
                    if not p.is_file():
                        rep.problems.append(f"{p}: mask file of {image_id} not found")
    return rep


def check_voc(root: Path, *, fast: bool = False) -> CheckReport:
    from lowlabel.data.voc import VOC_CLASSES

    rep = CheckReport("voc", root, classes=list(VOC_CLASSES))
    seg_dir = root / "ImageSets" / "Segmentation"
    lists = sorted(seg_dir.glob("*.txt")) if seg_dir.is_dir() else []
    if not lists:
        rep.problems.append(f"{seg_dir}: no split lists")
    needs_png: dict[str, bool] = {}  # each id is checked once, however many lists name it
    for lst in lists:
        ids = [line.split()[0] for line in read_lines(lst)]
        rep.counts[f"Segmentation/{lst.stem}"] = len(ids)
        for image_id in ids:
            needs_png[image_id] = needs_png.get(image_id, False) or lst.stem in ("train", "val", "trainval")
    for image_id, png_required in needs_png.items():
        hw = _image_hw(root / "JPEGImages" / f"{image_id}.jpg", fast, rep)
        xml = root / "Annotations" / f"{image_id}.xml"
        _guard(rep, lambda x=xml: parse_voc_objects(x, list(VOC_CLASSES)))
        png = root / "SegmentationClass" / f"{image_id}.png"
        if not png.is_file() and (root / "SegmentationClassAug" / f"{image_id}.png").is_file():
            png = root / "SegmentationClassAug" / f"{image_id}.png"
        if not (png_required or png.is_file()):
            continue
        m = _guard(rep, lambda p=png: load_index_png(p))
        if m is None:
            continue
        bad = np.setdiff1d(np.unique(m), np.r_[np.arange(len(VOC_CLASSES) + 1), 255])
        if bad.size:
            rep.problems.append(f"{png}: unknown class index {int(bad[0])}")
        if hw is not None and m.shape != hw:
            rep.problems.append(f"{png}: mask size {m.shape} differs from image size {hw}")
    return rep


def check_davis(root: Path, *, fast: bool = False, resolution: str = "480p") -> CheckReport:
    rep = CheckReport("davis", root)
    lists = sorted((root / "ImageSets" / "2017").glob("*.txt"))
    if not lists:
        rep.problems.append(f"{root / 'ImageSets' / '2017'}: no split lists")
    for lst in lists:
        seqs = read_lines(lst)
        rep.counts[f"sequences/{lst.stem}"] = len(seqs)
        n_frames = 0
        for seq in seqs:
            fdir, adir = root / "JPEGImages" / resolution / seq, root / "Annotations" / resolution / seq
            frames = sorted(fdir.glob("*.jpg"))
            if not frames:
                rep.problems.append(f"{fdir}: sequence listed in {lst.name} has no frames")
                continue
            n_frames += len(frames)
            first = adir / f"{frames[0].stem}.png"
            if not first.is_file():
                rep.problems.append(f"{first}: first-frame annotation missing")
            for f in frames:
                hw = _image_hw(f, fast, rep)
                a = adir / f"{f.stem}.png"
                if a.is_file() and hw is not None:
                    m = _guard(rep, lambda p=a: load_index_png(p))
                    if m is not None and m.shape != hw:
                        rep.problems.append(f"{a}: annotation size {m.shape} differs from frame size {hw}")
        rep.counts[f"frames/{lst.stem}"] = n_frames
    return rep


def check_video(root: Path, *, fast: bool = False) -> CheckReport:
    from lowlabel.data.video import count_frames, list_videos

    rep = CheckReport("video", root)
    videos = _guard(rep, lambda: list_videos(root)) or []
    rep.counts["videos"] = len(videos)
    total = 0
    for v in videos:
        n = _guard(rep, lambda v=v: count_frames(v))
        if n == 0:
            rep.problems.append(f"{v}: no frames")
        total += n or 0
    rep.counts["frames"] = total
    return rep


def _check_coco_json(rep: CheckReport, ann: Path, image_dir: Path, fast: bool, label: str) -> None:
    from lowlabel.data.coco import COCODetection

    instances = "captions" not in ann.name
    ds = _guard(
        rep,
        lambda: COCODetection(
            image_dir=image_dir, ann_file=ann if instances else None, captions_file=None if instances else ann
        ),
    )
    if ds is None:
        return
    rep.counts[f"{label} images"] = len(ds)
    if instances:
        rep.counts[f"{label} boxes"] = sum(len(v) for v in ds.annotations.values())
        if not rep.classes:
            rep.classes = list(ds.class_names)
    for img_id in ds.ids:
        info = ds.images[img_id]
        hw = _image_hw(image_dir / info["file_name"], fast or not instances, rep)
        if hw is not None and "height" in info and (int(info["height"]), int(info["width"])) != hw:
            rep.problems.append(f"{ann}: image {img_id} listed as {info['height']}x{info['width']}, file is {hw}")
        for a in ds.annotations[img_id]:
            x, y, w, h = a["bbox"]
            if hw is not None and (x < 0 or y < 0 or x + w > hw[1] + 0.5 or y + h > hw[0] + 0.5):
                rep.problems.append(f"{ann}: annotation {a.get('id')} box {a['bbox']} outside image {img_id}")


def check_coco(root: Path, *, fast: bool = False) -> CheckReport:
    """``root`` holds ``annotations/{instances,captions}_<split>.json`` and image folders ``<split>[2017]/``."""
    rep = CheckReport("coco", root)
    anns = sorted((root / "annotations").glob("*.json"))
    if not anns:
        rep.problems.append(f"{root / 'annotations'}: no JSON files")
    for ann in anns:
        if not ann.name.startswith(("instances_", "captions_")):
            continue
        split = ann.stem.split("_", 1)[1]
        cands = [root / split, root / f"{split}2017", root / split.replace("2017", "")]
        image_dir = next((c for c in cands if c.is_dir()), cands[0])
        _check_coco_json(rep, ann, image_dir, fast, ann.stem)
    split_file = root / "annotations" / "ovd_split.json"
    if split_file.is_file():
        from lowlabel.data.coco import load_ovd_split

        sp = _guard(rep, lambda: load_ovd_split(split_file))
        if sp:
            rep.counts["base categories"], rep.counts["novel categories"] = len(sp["base"]), len(sp["novel"])
    return rep


def check_domains(root: Path, *, fast: bool = False) -> CheckReport:
    """CUT-style ``trainA/ trainB/ testA/ testB/`` with optional ``annotations/<split>.json``."""
    rep = CheckReport("domains", root)
    for split in ("trainA", "trainB", "testA", "testB"):
        d = root / split
        if not d.is_dir():
            rep.problems.append(f"{d}: folder not found")
            continue
        ann = root / "annotations" / f"{split}.json"
        if ann.is_file():
            _check_coco_json(rep, ann, d, fast, split)
        else:
            files = [p for p in sorted(d.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
            rep.counts[f"{split} images"] = len(files)
            for p in files:
                _image_hw(p, fast, rep)
    return rep


def check_imagenet(root: Path, *, fast: bool = False) -> CheckReport:
    """``train/<class>/*`` and ``val/<class>/*`` (+ optional ``classes.txt``): every class folder without images,
    image outside a class folder, class folder of no listed class, listed class without a train folder and
    unreadable image is a problem."""
    from lowlabel.data.imagenet import CLASSES_FILE, read_classes
    from lowlabel.data.io import IMAGE_SUFFIXES

    rep = CheckReport("imagenet", root)
    classes = _guard(rep, lambda: read_classes(root))
    if classes is None:
        return rep
    folders = classes[0]
    rep.classes = list(folders)
    known = set(folders)
    source = CLASSES_FILE if (root / CLASSES_FILE).is_file() else "train/ folders"
    for split in ("train", "val"):
        split_dir = root / split
        if not split_dir.is_dir():
            rep.problems.append(f"{split_dir}: folder not found")
            continue
        count, seen = 0, set()
        for entry in sorted(split_dir.iterdir()):
            if entry.is_file():
                if entry.suffix.lower() in IMAGE_SUFFIXES:
                    rep.problems.append(f"{entry}: image directly in the split folder; images go in "
                                        f"{split_dir}/<class>/")
                continue
            if entry.name not in known:
                rep.problems.append(f"{entry}: class folder {entry.name!r} is not among the {len(folders)} classes "
                                    f"({source})")
                continue
            images = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                rep.problems.append(f"{entry}: class folder with no images")
            seen.add(entry.name)
            count += len(images)
            for path in images:
                _image_hw(path, fast, rep)
        rep.counts[f"{split} images"] = count
        if split == "train":
            rep.problems += [f"{split_dir}: no folder for listed class {c!r}" for c in folders if c not in seen]
    return rep


CITYSCAPES_FOG_BETAS = ("0.005", "0.01", "0.02")  # Foggy Cityscapes' three densities (leftImg8bit_trainvaltest_foggy)


def check_cityscapes(root: Path, *, fast: bool = False) -> CheckReport:
    """Cityscapes as its zips unpack plus the COCO files of the detection converters (the cross-domain configs'
    layout): ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``,
    ``annotations/instancesonly_filtered_gtFine_<split>.json`` and, when present,
    ``leftImg8bit_foggy/<split>/<city>/*_leftImg8bit_foggy_beta_<beta>.png``. Every annotated image needs its three
    foggy twins there; the beta 0.02 twins (the configs' choice) are decoded too."""
    rep = CheckReport("cityscapes", root)
    files = sorted((root / "annotations").glob("instancesonly_filtered_gtFine_*.json"))
    anns = {p.stem.rsplit("_", 1)[1]: p for p in files}
    if not anns:
        rep.problems.append(f"{root / 'annotations'}: no instancesonly_filtered_gtFine_<split>.json (convert gtFine "
                            "with cityscapesscripts' or mmdet's Cityscapes-to-COCO script)")
    for split, ann in anns.items():
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            rep.problems.append(f"{image_dir}: folder not found (the images of {ann.name})")
            continue
        _check_coco_json(rep, ann, image_dir, fast, split)
        foggy_dir = root / "leftImg8bit_foggy" / split
        if not foggy_dir.is_dir():
            continue
        from lowlabel.data.io import read_json

        data = read_json(ann)
        names = [str(info.get("file_name", "")) for info in (data.get("images", []) if isinstance(data, dict) else [])]
        counts = dict.fromkeys(CITYSCAPES_FOG_BETAS, 0)
        for name in names:
            stem = name[: -len("_leftImg8bit.png")] if name.endswith("_leftImg8bit.png") else Path(name).stem
            for beta in CITYSCAPES_FOG_BETAS:
                twin = foggy_dir / f"{stem}_leftImg8bit_foggy_beta_{beta}.png"
                if beta == "0.02":
                    found = _image_hw(twin, fast, rep) is not None
                elif twin.is_file():
                    found = True
                else:
                    rep.problems.append(f"{twin}: foggy twin of {name} not found")
                    found = False
                counts[beta] += found
        for beta, count in counts.items():
            rep.counts[f"{split} foggy beta {beta}"] = count
    return rep


def _check_label_folder(rep: CheckReport, image_dir: Path, label_dir: Path, fast: bool, label: str) -> None:
    """VOC XML or KITTI label files next to an image folder, read as the detectors read them
    (:class:`lowlabel.data.unpaired.DetectionFolder`): every image needs a label file that parses, with boxes
    inside the image; a label file without an image is a problem too."""
    from lowlabel.data.unpaired import DetectionFolder, parse_kitti_labels

    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            rep.problems.append(f"{folder}: folder not found")
            return
    folder = _guard(rep, lambda: DetectionFolder(image_dir=image_dir, annotations=label_dir))
    if folder is None:
        return
    assert isinstance(folder, DetectionFolder)
    rep.classes = rep.classes or list(folder.class_names)
    rep.counts[f"{label} images"] = len(folder.items)
    boxes_total, stems = 0, set()
    for image in folder.items:
        label_file = folder.label_file(image)
        stems.add(label_file.stem)
        if not label_file.is_file():
            rep.problems.append(f"{label_file}: label file of {image.name} not found")
            continue
        if folder.kind == "voc":
            parsed = _guard(rep, lambda f=label_file: parse_voc_objects(f, folder.class_names)[:2])
        else:
            parsed = _guard(rep, lambda f=label_file: parse_kitti_labels(f, folder.class_names))
        hw = _image_hw(image, fast, rep)
        if parsed is None:
            continue
        boxes = parsed[0]
        boxes_total += len(boxes)
        for box in boxes:  # 0-based inclusive corners
            if hw is not None and (box[0] < -0.5 or box[1] < -0.5 or box[2] > hw[1] - 0.5 or box[3] > hw[0] - 0.5):
                rep.problems.append(f"{label_file}: box {[round(float(v), 2) for v in box]} outside the "
                                    f"{hw[1]}x{hw[0]} image {image.name}")
    rep.counts[f"{label} boxes"] = boxes_total
    suffix = "xml" if folder.kind == "voc" else "txt"
    rep.problems += [f"{p}: label file without an image in {image_dir}" for p in sorted(label_dir.glob(f"*.{suffix}"))
                     if p.stem not in stems]


def check_kitti(root: Path, *, fast: bool = False) -> CheckReport:
    """KITTI's object benchmark as it unpacks: ``training/image_2/*.png`` and ``training/label_2/*.txt``."""
    rep = CheckReport("kitti", root)
    _check_label_folder(rep, root / "training" / "image_2", root / "training" / "label_2", fast, "training")
    return rep


def check_sim10k(root: Path, *, fast: bool = False) -> CheckReport:
    """Sim10k as it unpacks: ``VOC2012/JPEGImages/*.jpg`` and ``VOC2012/Annotations/*.xml``."""
    rep = CheckReport("sim10k", root)
    _check_label_folder(rep, root / "VOC2012" / "JPEGImages", root / "VOC2012" / "Annotations", fast, "VOC2012")
    return rep


def check(fmt: str, root: str | Path, *, fast: bool = False) -> CheckReport:
    """Run the checker of ``fmt`` (one of :data:`FORMATS`) on ``root``."""
    root = Path(root)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    fns: dict[str, Callable[..., CheckReport]] = {
        "wsol": check_wsol,
        "voc": check_voc,
        "davis": check_davis,
        "coco": check_coco,
        "video": check_video,
        "domains": check_domains,
        "imagenet": check_imagenet,
        "cityscapes": check_cityscapes,
        "kitti": check_kitti,
        "sim10k": check_sim10k,
    }
    return fns[fmt](root, fast=fast)
