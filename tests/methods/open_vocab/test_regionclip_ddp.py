"""RegionCLIP trains under DDP: two gloo processes (each with its own images, the image-text loss gathered across
them) end with identical students that moved away from the teacher, saved as a whole CLIP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from lowlabel.models.clip import read_clip_state
from tests.methods.open_vocab.coco_fake import write_coco
from tests.methods.open_vocab.test_regionclip import write_clip_run
from tests.models.test_clip import small_arch

ROOT = Path(__file__).resolve().parents[3]


def test_two_process_regionclip_ends_with_identical_students(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "coco")
    teacher = write_clip_run(tmp_path / "clip-run", small_arch(tmp_path / "small.json"))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.methods.open_vocab.ddp_regionclip", str(coco), str(teacher),
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert all(torch.equal(value, r1[key]) for key, value in r0.items())
    start = torch.load(teacher / "checkpoints" / "last.ckpt")["nets"]["model"]
    moved = [k for k, v in r0.items() if not torch.equal(v, start[k])]
    assert moved and all(k.startswith(("visual.layer2", "visual.layer3", "visual.layer4", "visual.attnpool"))
                         for k in moved)
    saved = read_clip_state(out / "run")  # the run is a whole CLIP, read as a later stage reads a clip run
    assert all(torch.equal(value, saved[key]) for key, value in r0.items())
