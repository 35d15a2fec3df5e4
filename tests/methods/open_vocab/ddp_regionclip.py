"""RegionCLIP under 2-process gloo DDP, for ``test_regionclip_ddp.py``:
``python -m tests.methods.open_vocab.ddp_regionclip COCO TEACHER_RUN OUT``.

Fabric's launcher re-runs this script once per rank; after training, every rank saves its student's state to
``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from lowlabel.engine import fit
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.open_vocab import regionclip as rc


def main(coco: Path, teacher: Path, out: Path) -> None:
    torch.set_num_threads(1)
    cfg = rc.RegionCLIPConfig(
        init_from=str(teacher), data=rc.RegionCLIPDataConfig(root=str(coco), regions="gt", flip=True),
        concepts=rc.ConceptConfig(templates=["a {} box."]), eval=rc.RegionEvalConfig(templates=["a {} box."]),
        optim=OptimConfig(name="sgd", lr=0.5, momentum=0.9, weight_decay=0.0, grad_clip=5.0),
        trainer=TrainerConfig(max_steps=2, batch_size=2, accelerator="cpu", devices=2, strategy="ddp", seed=3))
    cfg.trainer = dataclasses.replace(cfg.trainer, eval_every=0)
    method = rc.build(cfg)
    fit(method, run_dir=out / "run", progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(method.model.state_dict(), out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
