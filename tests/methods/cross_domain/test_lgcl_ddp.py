"""LGCL trains under DDP: two gloo processes end with identical weights, momentum branches and queues."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.methods.cross_domain.test_translation import write_domains

ROOT = Path(__file__).resolve().parents[3]


def test_two_process_lgcl_ends_with_identical_states_on_both_ranks(tmp_path: Path) -> None:
    data = write_domains(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tests.methods.cross_domain.ddp_lgcl", str(data), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert set(r0) == {"G", "D", "F", "lg_heads", "lg_momentum", "lg_queues"}
    for net, state in r0.items():
        for key, value in state.items():
            assert torch.equal(value, r1[net][key]), (net, key)
    # each step enqueued the keys of both ranks (one image each): 3 steps x 2 keys
    assert all(int(v) == 6 for k, v in r0["lg_queues"].items() if k.endswith("ptr"))
