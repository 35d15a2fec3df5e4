"""LGCL under 2-process gloo DDP, for ``test_lgcl_ddp.py``: ``python -m tests.methods.cross_domain.ddp_lgcl DATA OUT``.

Fabric's launcher re-runs this script once per rank; after training, every rank saves all of its networks' states
(translator, D, heads, momentum branch, queues) to ``OUT/rank<r>.pt``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from lowlabel.engine import fit
from lowlabel.methods.cross_domain import lgcl
from tests.methods.cross_domain.test_translation import tiny_config


def main(data: Path, out: Path) -> None:
    torch.set_num_threads(1)
    cfg = tiny_config(lgcl, data)
    cfg.data = dataclasses.replace(cfg.data, target_test_annotations="")  # no detector: image quality only
    cfg.trainer = dataclasses.replace(cfg.trainer, max_steps=3, batch_size=1, devices=2, strategy="ddp",
                                      eval_every=0, seed=5)
    method = lgcl.build(cfg)
    fit(method, run_dir=out / "run", progress=False)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save({name: net.state_dict() for name, net in method.networks().items()}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
