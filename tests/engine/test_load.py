"""lowlabel.load: the README's example runs as written (on a run trained here), predictions for PIL images, arrays and
tensors, and one-line errors for folders that are not runs and for unsupported images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lowlabel
from lowlabel.errors import UserError
from lowlabel.structures import Localization

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cam_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lowlabel.cli.main import main

    out = tmp_path_factory.mktemp("load")
    import tests.methods.wsol.wsol_fake as fake

    data_root, meta = fake.write_wsol(out / "data", "CUB", size=40)
    code = main(["train", "cam", "--config", str(ROOT / "configs" / "cam" / "synth-quick.yaml"), "--data.root", "",
                 "--data.data_root", str(data_root), "--data.metadata_root", str(meta), "--data.resize_size", "48",
                 "--data.crop_size", "40", "--trainer.max_steps", "1", "--trainer.batch_size", "2",
                 "--eval.cam_curve_interval", "0.1", "--run-dir", str(out / "run"), "--no-progress"])
    assert code == 0
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(out / "bird.jpg")
    return out


def test_the_readme_example_runs(cam_run: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### Use from Python\n\n```python\n(.*?)```", text, re.S)
    assert block, "README has no 'Use from Python' example"
    code = block.group(1).replace('"runs/da_wsol/quick"', repr(str(cam_run / "run")))
    monkeypatch.chdir(cam_run)  # bird.jpg is there
    exec(compile(code, "README example", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert len(printed) >= 3 and float(printed[1]) <= 1.0


def test_predict_takes_pil_arrays_and_tensors(cam_run: Path) -> None:
    model = lowlabel.load(cam_run / "run")
    pil = Image.open(cam_run / "bird.jpg")
    array = np.asarray(pil)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    one = model.predict(pil)
    many = model.predict([pil, array, tensor])
    assert isinstance(one, Localization) and len(many) == 3 and all(isinstance(p, Localization) for p in many)
    assert all(torch.allclose(p.heatmap, one.heatmap, atol=1e-5) for p in many)  # the same image three ways
    with pytest.raises(UserError, match=r"must be \(3, H, W\) uint8"):
        model.predict(tensor.float())
    with pytest.raises(UserError, match="unsupported image type str"):
        model.predict("bird.jpg")


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "notarun").mkdir()
    with pytest.raises(UserError, match="is not a run folder") as err:
        lowlabel.load(tmp_path / "notarun")
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lowlabel.load(tmp_path / "missing")
