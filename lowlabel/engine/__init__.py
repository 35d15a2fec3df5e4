"""The training engine: one loop on Lightning Fabric, run folders, checkpoints, logs.

Public API::

    fit(method, *, run_dir, resume=None, progress=None) -> EvalResult
    evaluate_run(run_or_ckpt, *, split="test", method_name=None, trust_pickle=False, ...) -> (EvalResult, Path)
    load_method_from_run(run_or_ckpt, *, method_name=None, trust_pickle=False) -> LoadedMethod
    seed_everything(seed, *, deterministic=False)

Lightning is imported only when :func:`fit` runs.
"""

from __future__ import annotations

from lowlabel.engine.loop import evaluate_nets, fit, load_nets
from lowlabel.engine.run import LoadedMethod, evaluate_run, find_checkpoint, load_method_from_run
from lowlabel.engine.seeding import seed_everything

__all__ = [
    "LoadedMethod",
    "evaluate_nets",
    "evaluate_run",
    "find_checkpoint",
    "fit",
    "load_method_from_run",
    "load_nets",
    "seed_everything",
]
