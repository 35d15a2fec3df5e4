"""Image classification folders in the ImageNet layout (ImageNet itself, ShapesWorld ``pretrain/``, a user's).

::

    <root>/train/<class>/<image>.{jpg,JPEG,png,...}
    <root>/val/<class>/<image>...          (ImageNet's val after the usual re-foldering script)
    <root>/classes.txt                     optional: one class folder name per line, in label order;
                                           extra text after the name ("n01440764 tench, Tinca tinca", as in
                                           LOC_synset_mapping.txt) is the readable name

Without ``classes.txt`` the labels are the sorted class folder names of the train split, as torchvision's
``ImageFolder`` gives them. Every class folder must hold at least one image, and no image may sit directly in a
split folder; a val class that train does not have is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lowlabel.data.io import IMAGE_SUFFIXES, read_lines
from lowlabel.errors import DataError

CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ImageFolderIndex:
    """One split: ``samples`` = [(image path, label)], ``classes`` = folder names in label order, ``names`` = the
    readable names (the folder names when ``classes.txt`` gives none)."""

    root: Path
    split: str
    samples: list[tuple[Path, int]]
    classes: list[str]
    names: list[str]


def read_classes(root: Path, train_split: str = "train") -> tuple[list[str], list[str]]:
    """(folder names, readable names) in label order: from ``classes.txt``, else the sorted folders of ``train``."""
    root = Path(root)
    path = root / CLASSES_FILE
    if path.is_file():
        folders, names = [], []
        for line in read_lines(path):
            folder, _, readable = line.partition(" ")
            if folder in folders:
                raise DataError(f"{path}: class {folder!r} listed twice")
            folders.append(folder)
            names.append(readable.strip() or folder)
        if not folders:
            raise DataError(f"{path}: no class names")
        return folders, names
    split_dir = root / train_split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: no such folder (expected <root>/{train_split}/<class>/<image>)")
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
    return folders, list(folders)


def index_split(root: str | Path, split: str, *, train_split: str = "train") -> ImageFolderIndex:
    """The images and labels of ``<root>/<split>``.

    Raises:
        DataError: a missing split folder; an image directly in the split folder; a class folder with no image;
            a class folder not among the classes (``classes.txt`` or the train split's folders); a listed class
            with no folder in the train split.
    """
    root = Path(root)
    classes, names = read_classes(root, train_split)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: no such folder (expected <root>/{split}/<class>/<image>)")
    label_of = {name: i for i, name in enumerate(classes)}
    samples: list[tuple[Path, int]] = []
    seen = set()
    for entry in sorted(split_dir.iterdir()):
        if entry.is_file():
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                raise DataError(f"{entry}: image directly in the split folder; images go in {split_dir}/<class>/")
            continue
        if entry.name not in label_of:
            raise DataError(f"{entry}: class folder {entry.name!r} is not among the {len(classes)} classes "
                            f"({CLASSES_FILE if (root / CLASSES_FILE).is_file() else train_split + '/ folders'})")
        images = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{entry}: class folder with no images ({', '.join(IMAGE_SUFFIXES)})")
        samples += [(p, label_of[entry.name]) for p in images]
        seen.add(entry.name)
    if split == train_split:
        missing = [c for c in classes if c not in seen]
        if missing:
            raise DataError(f"{split_dir}: no folder for {len(missing)} listed class(es), e.g. {missing[0]!r}")
    if not samples:
        raise DataError(f"{split_dir}: no class folders with images")
    return ImageFolderIndex(root=root, split=split, samples=samples, classes=classes, names=names)


__all__ = ["CLASSES_FILE", "ImageFolderIndex", "index_split", "read_classes"]
