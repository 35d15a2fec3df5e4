"""contrastcorr_ae: trained on the frames of a tiny DAVIS-layout folder it reconstructs them better than untrained,
predict writes one reconstruction per image, and a missing clips folder is a one-line error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlabel.engine import fit, load_method_from_run
from lowlabel.errors import DataError
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.correspondence import colour_ae
from lowlabel.methods.correspondence.common import VideoDataConfig
from lowlabel.models.modes import eval_mode

from .test_common import write_davis


def config(root: Path, steps: int) -> colour_ae.ColourAEConfig:
    return colour_ae.ColourAEConfig(
        data=VideoDataConfig(root=str(root), crop=16, eval_sequences=2),
        model=colour_ae.ColourAEModelConfig(channels=16),
        optim=OptimConfig(name="adam", lr=3e-3, weight_decay=0.0),
        trainer=TrainerConfig(max_steps=steps, batch_size=8, eval_split="val", log_every=10, accelerator="cpu"),
    )


def test_training_improves_the_reconstruction_and_predict_writes_images(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = write_davis(tmp_path / "davis")
    for seq in ("a", "b"):
        shutil.copytree(root / "JPEGImages" / "480p" / seq, root / "clips" / seq)
    method = colour_ae.build(config(root, 200))
    with eval_mode([method.model]):
        before = method.evaluate(method.networks(), "val", tmp_path / "before").metrics["PSNR"]
    result = fit(method, run_dir=tmp_path / "run", progress=False)
    assert result.metrics["PSNR"] > before + 3.0, (before, result.metrics)
    loaded = load_method_from_run(tmp_path / "run", method_name="contrastcorr_ae")
    loaded.method.predict(loaded.nets, root / "JPEGImages" / "480p" / "a", tmp_path / "pred")
    written = sorted((tmp_path / "pred").glob("*.png"))
    assert len(written) == 5 and np.asarray(Image.open(written[0])).shape == (16, 24, 3)


def test_missing_clips_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = write_davis(tmp_path / "davis")  # no clips/
    with pytest.raises(DataError, match="no clips folder; set data.clips"):
        colour_ae.build(config(root, 1)).train_dataset()
