"""The training engine: one loop on Lightning Fabric, run folders, checkpoints, logs.

Public API::

    fit(method, *, run_dir, resume=None, progress=None) -> EvalResult
    evaluate_run(run_or_ckpt, *, split="test", method_name=None, trust_pickle=False, ...) -> (EvalResult, Path)
    load_method_from_run(run_or_ckpt, *, method_name=None, trust_pickle=False) -> LoadedMethod
    seed_everything(seed, *, deterministic=False)

A run folder::

    config.yaml              the resolved method config (a valid --config file for `lowlabel train <method>`)
    env.json                 versions, git commit (+ dirty flag), device, world size, precision, seed, argv
                             and ``shapesworld``: {kind: version} of the ShapesWorld folders read
    logs/metrics.csv         long format `step,key,value`; keys: loss/<optimizer>, train/<logged term>,
                             lr/<optimizer>, <eval split>/<metric> (e.g. val/MaxBoxAccV2)
    logs/events.out.tfevents.*   the same scalars for TensorBoard
    checkpoints/last.ckpt    every eval / trainer.ckpt_every steps / the end (atomic writes)
    checkpoints/best.ckpt    the best evaluation by trainer.monitor (or EvalResult.monitor)
    metrics.json             latest evaluation: flat metric keys + step + split
    frozen.json              the frozen networks' {name: {source, sha256, parameters}} (methods that have them;
                             they are never checkpointed: rebuilding the method reloads them from their sources)
    eval/<split>/            what method.evaluate writes (per_image.csv, samples/), plus per_class.json

Resume (``resume="auto"`` or a path) restores networks, optimizers, schedulers, the AMP scaler,
step/epoch/position in the epoch, every RNG (per rank), the method's ``state_dict()`` and the CSV
log position, so an interrupted run continues bit-identically (with ``num_workers=0``; with worker
processes the data order is exact but per-worker augmentation streams are re-seeded per epoch).

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
