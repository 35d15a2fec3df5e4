"""The method contract: what every method module provides, and the config pieces they share.

A method is one module in ``lowlabel/methods/<task>/`` with

* a config ``@dataclass`` (``CAMConfig``, ``DAWSOLConfig``, ...) made of the small shared
  dataclasses below (``OptimConfig``, ``TrainerConfig``) plus its own sections. jsonargparse
  turns it into the CLI (``--optim.lr 0.01``) and YAML; the resolved config is saved in the
  run folder;
* a class implementing :class:`Method` (below), built from the config by ``build(cfg)``, the
  one place that reads config;
* one line in ``lowlabel/methods/__init__.py``'s ``METHODS`` dict.

The engine (``lowlabel/engine/loop.py``) owns the loop. It never branches on a method name; it
calls the members of :class:`Method` in this order::

    nets = method.networks()                 # trained (or state-carrying) modules: optimised, checkpointed
    frozen = method.frozen_networks()        # optional: teachers etc.; moved, eval mode, never checkpointed
    opts = method.optimizers(nets)           # one optimizer per name (a GAN's G and D, a detector's parts)
    settings = method.optim_configs()        # optional: OptimConfig per optimizer (default: config.optim)
    scheds = build_scheduler(opt, settings[name], max_steps) for each optimizer
    wrapped = fabric.setup_module(net) for nets with trainable parameters, fabric.to_device otherwise
    loader = fabric.setup_dataloaders(DataLoader(method.train_dataset(), ..., collate_fn=method.collate))
    for step ...:
        out = method.training_step({**wrapped, **frozen}, batch, step)
        # one phase:       out is a StepOutput; each loss is back-propagated into its optimizer's
        #                  parameters only, then every named optimizer steps (dict order)
        # ordered phases:  out is an iterator of StepOutputs (a generator that yields); after each
        #                  yield the engine back-propagates that phase's losses and steps its optimizers
        #                  before resuming it, so a GAN's generator loss sees the updated discriminator
        method.after_optimizer_step({**wrapped, **frozen}, step)  # EMA / momentum / memory updates
        every trainer.eval_every steps (and at the end), on rank 0, in eval mode without gradients:
            result = method.evaluate({**unwrapped, **frozen}, split=trainer.eval_split, out_dir=run/eval/<split>)

Gradient clipping, schedule, learning rate and betas come from each optimizer's own
:class:`OptimConfig` (``optim_configs``). With ``trainer.accumulate`` > 1, every micro-batch runs
a phase before that phase's optimizers step.

Frozen networks (:class:`Frozen`) are loaded by the method from where they came from (a run
folder or a weights file named in its config); the engine moves them to the device, keeps them
in eval mode with ``requires_grad`` off, leaves them out of optimizers and checkpoints, and
records their files and SHA-256 in ``<run>/frozen.json``.

Stages: a multi-stage method is one method per stage. A later stage names the earlier one in
its config's ``init_from`` (a run folder or a weights file), read through
:func:`lowlabel.models.weights.read_stage` (one-line errors naming the file on a mismatch).

Inference: ``predict_batch(nets, images)`` takes a list of uint8 ``(3, H, W)`` image tensors
and returns one typed prediction per image (:mod:`lowlabel.structures`: ``Localization``,
``Segmentation``, ...), in memory, so that one method can feed another; ``predict`` (files in,
files out, ``lowlabel predict``) is built on it.

Export: ``export_networks(nets)`` returns the networks that predict at inference time, each as an
:class:`ExportNet`: a small module with plain tensor inputs and outputs (normalised float images in), example
inputs, input/output names and the dynamic axes. ``lowlabel export RUN --format onnx`` writes each with
``torch.onnx.export`` (:mod:`lowlabel.engine.export`); a method without it cannot be exported to ONNX (its
weights can still be written as safetensors).

Method code is plain PyTorch: it does not import Lightning, and it never calls ``.cuda()``
(create tensors with ``device=x.device``). Everything a method needs at construction (the data
root, the number of classes) comes from its config.

Evaluation writes, besides the returned numbers, what the report needs to show pictures
without reloading the model: ``out_dir/per_image.csv`` (``image_id,score`` with the method's
per-image metric, used for the failure gallery) and ``out_dir/samples/<image_id>.npz`` for the
fixed sample ids plus the worst ones (see :mod:`lowlabel.samples`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from lowlabel.structures import IMAGENET_MEAN, IMAGENET_STD


def unwrap_module(net: nn.Module) -> nn.Module:
    """The module behind the engine's wrappers (Fabric and DDP keep it as ``.module``), to reach its own methods and
    submodules."""
    while isinstance(getattr(net, "module", None), nn.Module):
        net = net.module
    return net


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
    # "poly": lr = base * (1 - t/T) ** power (SIPE/IRN); "cosine"; "constant";
    # "multistep": lr *= gamma at each step of `milestones` (detectron2's SOLVER.STEPS).
    schedule: Literal["constant", "step", "poly", "cosine", "multistep"] = "constant"
    step_size: int = 1000
    milestones: tuple[int, ...] = ()
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
    """What ``training_step`` returns (or yields, once per phase, when the step has ordered phases).

    Attributes:
        losses: one scalar loss per optimizer name. The engine back-propagates each into its
            optimizer's parameters only, then steps those optimizers. A phase names the optimizers
            it steps; a one-phase step usually names all of them.
        logs: extra scalars to log (loss terms, accuracies). Loss terms should be logged here
            individually so that the non-finite guard can name the term that broke.
    """

    losses: dict[str, torch.Tensor]
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class Frozen:
    """A network the method uses but never trains: a teacher, a frozen detector, a colour autoencoder.

    Attributes:
        module: the network, with its weights loaded.
        source: where the weights came from (a run folder or a file; "" when the module needs no
            weights, e.g. a fixed filter bank). Rebuilding the method reloads it from there.
        sha256: the hash of the file read (``lowlabel.models.weights.Weights.sha256``), "" without one.
    """

    module: nn.Module
    source: str = ""
    sha256: str = ""


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


@dataclass
class ExportNet:
    """One inference network as ``lowlabel export`` writes it (ONNX, with its ``config.json`` entry).

    Attributes:
        module: plain tensors in, a tensor or a tuple of tensors out (one per ``output_names``), in eval mode.
        example_inputs: one tensor per ``input_names`` (batch of 2: torch.export specialises sizes 0 and 1).
        input_names, output_names: the ONNX graph's names.
        dynamic_axes: input name -> {axis: "batch" | "height" | "width"}; axes sharing a name share a size.
        outputs: output name -> what it holds (shape and meaning), copied into ``config.json``.
        colour, scale, mean, std: the input is ``(image * scale - mean) / std`` of an 8-bit image in colour space
            ``colour`` (channels in that order).
        image_size: ``(H, W)`` the method itself feeds (None: any size the dynamic axes allow).
        class_names: the classes of the outputs' class axis, where known.
    """

    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    outputs: dict[str, str] = field(default_factory=dict)
    colour: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    image_size: tuple[int, int] | None = None
    class_names: list[str] | None = None


@runtime_checkable
class Method(Protocol):
    """The members every method implements (the optional ones are listed below the class)."""

    name: str
    config: Any

    def networks(self) -> dict[str, nn.Module]:
        """The modules the engine checkpoints, keyed by name: trained ones, and ones whose buffers are state
        (memories, momentum encoders). Those with trainable parameters are the optimizers' and DDP's; under DDP the
        others start from rank 0's state too. Called once."""
        ...

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per name; ``training_step`` returns (or yields) losses keyed by these names."""
        ...

    def train_dataset(self) -> torch.utils.data.Dataset:
        """The training set; the engine wraps it in a (distributed) DataLoader."""
        ...

    def training_step(
        self, nets: Mapping[str, nn.Module], batch: Any, step: int
    ) -> StepOutput | Iterator[StepOutput]:
        """Forward pass and losses for one micro-batch: a :class:`StepOutput`, or a generator yielding one
        per phase (ordered optimizer steps). ``nets`` are the engine-wrapped modules plus the frozen ones."""
        ...

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        """Score ``split`` with the ``lowlabel.metrics`` functions; write per-image scores and samples."""
        ...


# Optional members, looked up with getattr by the engine:
#   frozen_networks() -> dict[str, Frozen]                    teachers, frozen detectors; default: none
#   optim_configs() -> dict[str, OptimConfig]                 per-optimizer lr/betas/schedule/clipping;
#                                                             default: config.optim for every optimizer
#   collate: Callable[[list[Any]], Any]                       default: torch default_collate
#   after_optimizer_step(nets, step) -> None                  nets as training_step gets them; default: nothing
#   state_dict() / load_state_dict(d)                         plain, non-tensor state (a threshold found at
#                                                             evaluation); default: nothing
#   predict_batch(nets, images: list[Tensor]) -> list[...]    typed predictions in memory
#   predict(nets, inputs: Path, out: Path) -> None            `lowlabel predict`, built on predict_batch
#   export_networks(nets) -> dict[str, ExportNet]             the inference networks `lowlabel export` writes
#                                                             (ONNX), keyed by file name; default: none
#   load_foreign_weights(nets, state, *, source) -> None      load another codebase's state dict (``lowlabel
#                                                             evaluate --ckpt FILE --method-config``), one-line
#                                                             errors naming ``source``; default: strict=False load
Collate = Callable[[list[Any]], Any]


def optim_configs(method: Any, names: Iterable[str]) -> dict[str, OptimConfig]:
    """The :class:`OptimConfig` of each optimizer in ``names``: ``method.optim_configs()`` where the method
    has it (it must cover every name), else ``method.config.optim`` for all."""
    names = list(names)
    own = getattr(method, "optim_configs", None)
    if own is None:
        return {name: method.config.optim for name in names}
    settings = dict(own())
    missing = [n for n in names if n not in settings]
    if missing:
        raise ValueError(f"{method.name}.optim_configs() has no settings for optimizer(s) {missing}")
    return settings


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
    """A per-optimizer-step LR schedule from ``cfg`` (warm-up, then constant/step/multistep/poly/cosine)."""
    import math

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "step":
            return cfg.gamma ** (step // cfg.step_size)
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(step >= m for m in cfg.milestones)
        t = min(step / max(total_steps, 1), 1.0)
        if cfg.schedule == "poly":
            return (1.0 - t) ** cfg.power
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
