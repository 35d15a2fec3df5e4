"""The ImageNet-layout reader: labels from classes.txt or the sorted folders, and one-line errors for a class
folder without images, an image outside a class folder, and classes that do not match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowlabel.data.imagenet import index_split
from lowlabel.errors import DataError


def write(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    for split, classes in layout.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(root / split / name / f"{i}.JPEG")
    return root


def test_labels_are_the_sorted_train_folders(tmp_path: Path) -> None:
    root = write(tmp_path, {"train": {"zebra": 2, "ant": 1}, "val": {"zebra": 1}})
    train = index_split(root, "train")
    assert train.classes == ["ant", "zebra"] and [label for _, label in train.samples] == [0, 1, 1]
    assert [label for _, label in index_split(root, "val").samples] == [1]  # val may lack classes


def test_classes_file_sets_the_order_and_readable_names(tmp_path: Path) -> None:
    root = write(tmp_path, {"train": {"n02": 1, "n01": 1}})
    (root / "classes.txt").write_text("n02 great white shark\nn01 tench, Tinca tinca\n")
    index = index_split(root, "train")
    assert index.classes == ["n02", "n01"] and index.names == ["great white shark", "tench, Tinca tinca"]
    assert [(p.parent.name, label) for p, label in index.samples] == [("n01", 1), ("n02", 0)]


@pytest.mark.parametrize(("case", "message"), [
    ("empty class", "class folder with no images"),
    ("loose image", "image directly in the split folder"),
    ("unknown val class", "is not among the 1 classes"),
    ("listed class missing", "no folder for 1 listed class"),
])
def test_bad_layouts_are_one_line_errors(tmp_path: Path, case: str, message: str) -> None:
    root = write(tmp_path, {"train": {"cat": 1}, "val": {"cat": 1}})
    split = "train"
    if case == "empty class":
        (root / "train" / "dog").mkdir()
    elif case == "loose image":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "train" / "stray.jpg")
    elif case == "unknown val class":
        write(root, {"val": {"dog": 1}})
        split = "val"
    else:
        (root / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match=message) as err:
        index_split(root, split)
    assert "\n" not in str(err.value) and str(root) in str(err.value)
