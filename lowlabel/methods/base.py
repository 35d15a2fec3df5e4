"""The method contract: what every method module provides, and the config pieces they share.

A method is one module in ``lowlabel/methods/`` with

* a config ``@dataclass`` (``CAMConfig``, ``DAWSOLConfig``, ...) made of the small shared
  dataclasses below (``OptimConfig``, ``TrainerConfig``) plus its own sections. jsonargparse
  turns it into the CLI (``--optim.lr 0.01``) and YAML; the resolved config is saved in the
  run folder;
* a class implementing :class:`Method` (below), built from the config by ``build(cfg)``, the
  one place that reads config;
* one line in ``lowlabel/methods/__init__.py``'s ``METHODS`` dict.

The engine (``lowlabel/engine/loop.py``) owns the loop. It never branches on a method name; it
calls the members of :class:`Method` in this order::

    nets = method.networks()                       # plain nn.Modules, keyed by name
    opts = method.optimizers(nets)                 # one optimizer per name (GANs have several)
    scheds = method.schedulers(opts, total_steps)  # optional LR schedules, stepped every optimizer step
    wrapped = fabric.setup_module(...) for each net; fabric.setup_optimizers(...) for each optimizer
    loader = fabric.setup_dataloaders(DataLoader(method.train_dataset(), ...,
                                                 collate_fn=method.collate))
    for step ...:
        out = method.training_step(wrapped, batch, step)   # StepOutput: losses keyed by optimizer name
        for name in opts (dict order): backward(out.losses[name]) restricted to that optimizer's
                                       parameters, then step (after `accumulate` micro-batches)
        method.after_optimizer_step(wrapped, step)          # EMA / momentum / memory updates
        every trainer.eval_every steps (and at the end), on rank 0:
            result = method.evaluate(unwrapped, split=cfg.trainer.eval_split, out_dir=run/eval/<split>)

Method code is plain PyTorch: it does not import Lightning, and it never calls ``.cuda()``
(create tensors with ``device=x.device``). Everything a method needs at construction (the data
root, the number of classes) comes from its config.

Evaluation writes, besides the returned numbers, what the report needs to show pictures
without reloading the model: ``out_dir/per_image.csv`` (``image_id,score`` with the method's
per-image metric, used for the failure gallery) and ``out_dir/samples/<image_id>.npz`` for the
fixed sample ids plus the worst ones (see ``lowlabel/report/samples.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class OptimConfig:
    """Optimizer and LR schedule. ``lr`` is the base rate; methods may scale it per parameter group."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    # "step": lr *= gamma every `step_size` optimizer steps (DA-WSOL's decay every k epochs, in steps);
    # "poly": lr = base * (1 - t/T) ** power (SIPE/IRN); "cosine"; "constant".
    schedule: Literal["constant", "step", "poly", "cosine"] = "constant"
    step_size: int = 1000
    gamma: float = 0.1
    power: float = 0.9
    warmup_steps: int = 0
    grad_clip: float = 0.0  # max global grad norm, 0 = off (SIPE clips at 1)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.step_size <= 0:
            raise ValueError(f"optim.step_size must be > 0, got {self.step_size}")


@dataclass
class TrainerConfig:
    """What the engine needs: budget, batching, evaluation and hardware. Shared by every method."""

    max_steps: int = 100  # optimizer steps (after gradient accumulation)
    batch_size: int = 32  # per device, per micro-batch
    accumulate: int = 1  # micro-batches per optimizer step
    num_workers: int = 0
    eval_every: int = 0  # 0 = evaluate once at the end
    eval_split: str = "val"  # the split used for periodic evaluation and best-checkpoint selection
    monitor: str = ""  # metric key that picks checkpoints/best ("" = the method's default)
    monitor_mode: Literal["max", "min"] = "max"
    ckpt_every: int = 500  # also at evaluations and at the end; 0 = only there
    log_every: int = 10
    seed: int = 0
    deterministic: bool = False
    precision: str = "32-true"  # Fabric precision: 32-true, bf16-mixed, 16-mixed
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        for key in ("max_steps", "batch_size", "accumulate", "num_nodes"):
            if getattr(self, key) < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")
        if self.eval_every < 0 or self.ckpt_every < 0:
            raise ValueError("trainer.eval_every and trainer.ckpt_every must be >= 0")


@dataclass
class StepOutput:
    """What ``training_step`` returns.

    Attributes:
        losses: one scalar loss per optimizer name; the engine back-propagates each into its
            optimizer's parameters only.
        logs: extra scalars to log (loss terms, accuracies). Loss terms should be logged here
            individually so that the non-finite guard can name the term that broke.
    """

    losses: dict[str, torch.Tensor]
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    """What ``evaluate`` returns.

    Attributes:
        metrics: flat keys named as in DESIGN.md section 4 (``MaxBoxAccV2``, ``PxAP``, ``mIoU``, ...),
            percentages where the official scorer reports percentages.
        per_class: optional ``{metric: {class_name: value}}`` tables (``IoU`` per class, ...).
        monitor: the key of ``metrics`` that picks the best checkpoint by default.
    """

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)
    monitor: str = ""


@runtime_checkable
class Method(Protocol):
    """The five members every method implements (plus the optional ones with defaults in the engine)."""

    name: str
    config: Any

    def networks(self) -> dict[str, nn.Module]:
        """The trainable (and EMA) modules, keyed by name. Called once."""
        ...

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per name; ``training_step`` returns one loss per name."""
        ...

    def train_dataset(self) -> torch.utils.data.Dataset:
        """The training set; the engine wraps it in a (distributed) DataLoader."""
        ...

    def training_step(self, nets: Mapping[str, nn.Module], batch: Any, step: int) -> StepOutput:
        """Forward pass and losses for one micro-batch. ``nets`` are the engine-wrapped modules."""
        ...

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        """Score ``split`` with the ``lowlabel.metrics`` functions; write per-image scores and samples."""
        ...


# Optional members, looked up with getattr by the engine:
#   collate: Callable[[list[Any]], Any]                       default: torch default_collate
#   schedulers(opts, total_steps) -> dict[str, LRScheduler]   default: build_scheduler(cfg.optim)
#   after_optimizer_step(nets, step) -> None                  default: nothing
#   state_dict() / load_state_dict(d)                         non-module state (memory banks kept
#                                                             outside nn.Modules); default: nothing
#   predict(nets, inputs: Path, out: Path) -> None            `lowlabel predict`
Collate = Callable[[list[Any]], Any]


def build_optimizer(params: Any, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg`` over ``params`` (parameters or param-group dicts)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}; choose sgd, adam or adamw")


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimizer-step LR schedule from ``cfg`` (warm-up, then constant/step/poly/cosine)."""
    import math

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "step":
            return cfg.gamma ** (step // cfg.step_size)
        t = min(step / max(total_steps, 1), 1.0)
        if cfg.schedule == "poly":
            return (1.0 - t) ** cfg.power
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
