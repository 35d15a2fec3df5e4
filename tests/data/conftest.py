"""One ShapesWorld ``quick`` generation per test session, shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowlabel.data.synth import generate


@pytest.fixture(scope="session")
def quick_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapesworld") / "quick"
    manifest = generate(root, preset="quick", seed=0, workers=2)
    (root / ".digest").write_text(manifest["digest"])
    return root
