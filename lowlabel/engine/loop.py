"""The one training loop, on Lightning Fabric. It calls the method protocol of ``lowlabel.methods.base``.

Call order per optimizer step (``trainer.accumulate`` = K micro-batches)::

    frozen modules back to eval mode
    nets = {**wrapped networks, **frozen networks}
    one phase (training_step returns a StepOutput), per micro-batch:
        out = method.training_step(nets, batch, step)      # DDP backward sync skipped except on the last
        backward(out.losses[name] / K)                     #   micro-batch; each loss into its optimizer only
      then, per optimizer named, in dict order:
        clip grads (its grad_clip); opt.step(); zero_grad(); sched.step()
    ordered phases (training_step returns a generator): K generators, one per micro-batch; per phase j:
        advance every generator once; backward each yielded loss / K
        step phase j's optimizers as above, then resume the generators (phase j+1 sees the update)
      (the phases' work must happen lazily, in the generator's body: the engine starts a phase by resuming it)
    method.after_optimizer_step(nets, step)                # EMA / momentum updates
    log / evaluate (rank 0) / checkpoint

Each optimizer's schedule and clipping come from ``methods.base.optim_configs`` (its own OptimConfig).

DDP: a one-phase step uses DDP's reducer (gradients are reduced during the last micro-batch's
backward). A phased step cannot: a generator's forward through G in phase 1 is back-propagated only
in phase 2, and micro-batches interleave. So every forward and backward of a phased step runs under
``no_backward_sync`` for every wrapped module, and right before an optimizer is clipped and stepped
its gradients are averaged over the ranks explicitly (one flat buffer, one ``all_reduce``).

Frozen networks (``method.frozen_networks()``) are moved to the device, have ``requires_grad`` off,
are put back in eval mode before every optimizer step and after every evaluation, and are never
optimised, checked for non-finite weights or checkpointed; ``<run>/frozen.json`` records them.

Lightning is imported here only, inside :func:`fit`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowlabel.data import shapesworld_versions
from lowlabel.engine.checkpoint import (
    FORMAT,
    atomic_copy,
    atomic_write,
    check_format,
    load_checkpoint,
    remove_stale_temp_files,
    rng_state,
    serialize,
    set_rng_state,
)
from lowlabel.engine.config import config_to_dict, dump_yaml
from lowlabel.engine.frozen import (
    RECORD,
    changed_warnings,
    frozen_networks,
    frozen_record,
    keep_in_eval,
    merge_nets,
    read_record,
)
from lowlabel.engine.logging import RunLogger, environment_info, write_json, write_metrics
from lowlabel.engine.progress import TrainProgress
from lowlabel.engine.sampler import ResumableSampler
from lowlabel.engine.seeding import seed_everything
from lowlabel.errors import NonFiniteLossError
from lowlabel.methods.base import EvalResult, StepOutput, build_scheduler, optim_configs
from lowlabel.models.modes import eval_mode
from lowlabel.models.weights import load_nets


@dataclass
class LoopState:
    """Counters that a checkpoint restores."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed on this rank
    best_value: float | None = None
    best_step: int = -1
    last_eval: dict[str, Any] = field(default_factory=dict)  # {"step", "split", "metrics", "monitor"}


def fit(method: Any, *, run_dir: str | Path, resume: str | Path | None = None,
        progress: bool | None = None) -> EvalResult:
    """Train ``method`` for ``method.config.trainer.max_steps`` optimizer steps.

    Args:
        method: an object implementing :class:`lowlabel.methods.base.Method`.
        run_dir: the run folder (created). Every rank must pass the same folder; rank 0's wins.
        resume: a checkpoint path, ``"auto"`` (``run_dir/checkpoints/last.ckpt`` if present, else a
            fresh start) or None.
        progress: None = progress bar when stdout is a terminal; False = never.

    Returns:
        The last evaluation (on ``trainer.eval_split``), on every rank.

    Raises:
        NonFiniteLossError: a loss or logged term became NaN/inf (the last good checkpoint is kept).
        CheckpointError: a checkpoint could not be written (e.g. disk full).
    """
    loop = _Loop(method, run_dir=Path(run_dir), resume=resume, progress=progress)
    return loop.run()


def _make_fabric(tcfg: Any) -> Any:
    from lightning.fabric import Fabric

    return Fabric(accelerator=tcfg.accelerator, devices=tcfg.devices, strategy=tcfg.strategy,
                  num_nodes=tcfg.num_nodes, precision=tcfg.precision)


class _Loop:
    def __init__(self, method: Any, *, run_dir: Path, resume: str | Path | None, progress: bool | None):
        self.method = method
        self.cfg = method.config
        self.tcfg = method.config.trainer
        self.fabric = _make_fabric(self.tcfg)
        self.fabric.launch()
        run_dir_str, resume_arg = self.fabric.broadcast((str(run_dir), None if resume is None else str(resume)), src=0)
        self.run_dir = Path(run_dir_str)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.rank0 = self.fabric.global_rank == 0
        self.world = self.fabric.world_size
        self.resume_path = self._resolve_resume(resume_arg)
        self.progress_flag = progress
        self.state = LoopState()

    def _resolve_resume(self, resume: str | None) -> Path | None:
        if resume is None:
            return None
        if resume == "auto":
            last = self.ckpt_dir / "last.ckpt"
            return last if last.is_file() else None
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"--resume: checkpoint not found: {path}")
        return path

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        fabric, method, tcfg = self.fabric, self.method, self.tcfg
        seed_everything(tcfg.seed + fabric.global_rank, deterministic=tcfg.deterministic)
        self.nets: dict[str, nn.Module] = dict(method.networks())
        self.frozen = frozen_networks(method)
        for item in self.frozen.values():
            fabric.to_device(item.module)
        self.opts: dict[str, torch.optim.Optimizer] = dict(method.optimizers(self.nets))
        self.settings = optim_configs(method, self.opts)
        self.scheds = {n: build_scheduler(o, self.settings[n], tcfg.max_steps) for n, o in self.opts.items()}
        self.wrapped: dict[str, nn.Module] = {}
        for name, net in self.nets.items():
            trainable = any(p.requires_grad for p in net.parameters())
            self.wrapped[name] = fabric.setup_module(net) if trainable else fabric.to_device(net)
            if not trainable and self.world > 1:
                _broadcast_state(net)  # DDP broadcasts the trained modules; memories and momentum copies too
        self.step_nets = merge_nets(self.wrapped, self.frozen)  # what training_step and after_optimizer_step get
        self.fabric_opts = {name: fabric.setup_optimizers(opt) for name, opt in self.opts.items()}
        self.params = {n: [p for g in o.param_groups for p in g["params"]] for n, o in self.opts.items()}
        self._setup_data()

    def _setup_data(self) -> None:
        from torch.utils.data import DataLoader
        from torch.utils.data._utils.collate import default_collate

        dataset = self.method.train_dataset()
        self.sampler = ResumableSampler(len(dataset), seed=self.tcfg.seed, rank=self.fabric.global_rank,
                                        world_size=self.world)
        # A private generator: creating a loader iterator must not consume the global torch RNG.
        self.loader_gen = torch.Generator()
        loader = DataLoader(dataset, batch_size=self.tcfg.batch_size, sampler=self.sampler,
                            num_workers=self.tcfg.num_workers, generator=self.loader_gen,
                            collate_fn=getattr(self.method, "collate", None) or default_collate)
        self.loader = self.fabric.setup_dataloaders(loader, use_distributed_sampler=False)

    def _batches(self) -> Iterator[Any]:
        """Endless micro-batches; updates epoch / batch_in_epoch as they are consumed."""
        state = self.state
        while True:
            start = state.batch_in_epoch * self.tcfg.batch_size
            if start >= self.sampler.shard_size:
                state.epoch, state.batch_in_epoch, start = state.epoch + 1, 0, 0
            self.sampler.seek(state.epoch, start)
            self.loader_gen.manual_seed((self.tcfg.seed * 1_000_003 + state.epoch) * 1009 + self.fabric.global_rank)
            for batch in self.loader:
                state.batch_in_epoch += 1
                yield batch
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0

    # ------------------------------------------------------------------ run
    def run(self) -> EvalResult:
        self._setup()
        resume_offset = None
        if self.resume_path is not None:
            resume_offset = self._restore(self.resume_path)
        if self.rank0:
            self._write_run_files()
            self._write_frozen_record()
            remove_stale_temp_files(self.ckpt_dir)
        self.logger = RunLogger(self.run_dir / "logs", enabled=self.rank0, resume_offset=resume_offset,
                                resume_step=self.state.step)
        self.bar = TrainProgress(total=self.tcfg.max_steps, start=self.state.step,
                                 enabled=self.progress_flag, description=self.method.name, quiet=not self.rank0)
        if self.rank0 and self.resume_path is not None:
            self.bar.print(f"resumed from {self.resume_path} at step {self.state.step}")
        try:
            self._train()
            if self.state.last_eval.get("step") != self.state.step:
                self._checkpoint(best=False)  # the trained weights are safe before a long final evaluation
                self._evaluate_and_checkpoint()
            elif not (self.ckpt_dir / "last.ckpt").is_file():
                self._checkpoint(best=False)
        finally:
            self.bar.close()
            self.logger.close()
        return self.fabric.broadcast(_eval_result(self.state.last_eval), src=0)

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_yaml(self.cfg))
        env = environment_info(method=self.method.name, seed=self.tcfg.seed, device=str(self.fabric.device),
                               world_size=self.world, precision=self.tcfg.precision)
        env["deterministic"] = self.tcfg.deterministic
        env["shapesworld"] = shapesworld_versions()  # the data versions read, checked by read_stage of a later stage
        env["resumed_from"] = None if self.resume_path is None else str(self.resume_path)
        env["resumed_at_step"] = self.state.step if self.resume_path is not None else None
        write_json(self.run_dir / "env.json", env)

    def _write_frozen_record(self) -> None:
        """``frozen.json``; on resume, a warning for each frozen network whose file changed since the start."""
        record = frozen_record(self.frozen)
        if self.resume_path is not None:
            for line in changed_warnings(read_record(self.run_dir), record):
                print(line, file=sys.stderr)
        if record:
            write_json(self.run_dir / RECORD, record)

    def _train(self) -> None:
        tcfg = self.tcfg
        batches = self._batches()
        after = getattr(self.method, "after_optimizer_step", None)
        while self.state.step < tcfg.max_steps:
            keep_in_eval(self.frozen)
            values = self._optimizer_step(batches)
            values.update({f"lr/{name}": float(opt.param_groups[0]["lr"]) for name, opt in self.opts.items()})
            if after is not None:
                after(self.step_nets, self.state.step)
            self.state.step += 1
            step = self.state.step
            if step % tcfg.log_every == 0 or step == tcfg.max_steps:
                self.logger.log(step, values)
            self.bar.update(step, values)
            if tcfg.eval_every and step % tcfg.eval_every == 0 and step < tcfg.max_steps:
                self._evaluate_and_checkpoint()
            elif tcfg.ckpt_every and step % tcfg.ckpt_every == 0 and step < tcfg.max_steps:
                self._checkpoint(best=False)

    def _optimizer_step(self, batches: Iterator[Any]) -> dict[str, float]:
        """``accumulate`` micro-batches, then one step of every optimizer that received a loss (one phase);
        a generator from ``training_step`` goes to :meth:`_phased_step`. Returns the mean logged values."""
        accumulate, step = self.tcfg.accumulate, self.state.step
        means: dict[str, float] = {}
        stepped: list[str] = []
        for micro in range(accumulate):
            with self._no_sync(micro < accumulate - 1):  # DDP reduces in the last micro-batch's backward
                out = self.method.training_step(self.step_nets, next(batches), step)
                if isinstance(out, StepOutput):
                    _add_means(means, self._backward_checked(out), accumulate)
            if not isinstance(out, StepOutput):
                if not isinstance(out, Iterator):
                    raise TypeError(f"training_step returned a {type(out).__name__}; return a StepOutput or yield "
                                    "one per phase")
                if micro > 0:
                    raise ValueError(f"training_step returned a StepOutput for micro-batch 0 of step {step} "
                                     f"and a {type(out).__name__} for micro-batch {micro}")
                return self._phased_step(out, batches)
            stepped += [name for name in out.losses if name not in stepped]
        self._step_optimizers(stepped, all_reduce=False)
        return means

    def _phased_step(self, first: Iterator[StepOutput], batches: Iterator[Any]) -> dict[str, float]:
        """Ordered phases: phase j of every micro-batch's generator, then phase j's optimizers step, then j+1.
        DDP's reducer is off for the whole step; each optimizer's gradients are averaged before it steps."""
        accumulate, step = self.tcfg.accumulate, self.state.step
        means: dict[str, float] = {}
        stepped: list[str] = []
        with self._no_sync(True):
            gens = [first] + [self.method.training_step(self.step_nets, next(batches), step)
                              for _ in range(accumulate - 1)]
            if any(isinstance(gen, StepOutput) for gen in gens):
                raise ValueError(f"training_step returned phases (a generator) for micro-batch 0 of step {step} "
                                 "and a StepOutput for another micro-batch")
            for phase in itertools.count():
                names = self._run_phase(gens, phase=phase, stepped=stepped, means=means)
                if names is None:
                    if phase == 0:
                        raise ValueError(f"training_step's generator yielded no phase at step {step}")
                    break
                self._step_optimizers(names, all_reduce=self.world > 1)
                stepped += names
        return means

    def _run_phase(self, gens: list[Iterator[StepOutput]], *, phase: int, stepped: list[str],
                   means: dict[str, float]) -> list[str] | None:
        """Advance every generator once and back-propagate what it yields; the phase's optimizer names, or None
        when every generator is exhausted. Logged values of the phase go into ``means`` (later phases win)."""
        step, names = self.state.step, None
        phase_means: dict[str, float] = {}
        for micro, gen in enumerate(gens):
            out = next(gen, None)
            if out is not None and not isinstance(out, StepOutput):
                raise TypeError(f"training_step yielded a {type(out).__name__} at step {step}, not a StepOutput")
            got = None if out is None else list(out.losses)
            if micro == 0:
                names = got
                again = [name for name in names or [] if name in stepped]
                if again:
                    raise ValueError(f"optimizer(s) {again} named by two phases of step {step}; each optimizer "
                                     "steps at most once per step")
            elif got != names:
                raise ValueError(f"step {step}, phase {phase}: micro-batch {micro} yielded {_phase_text(got)}, "
                                 f"micro-batch 0 {_phase_text(names)}; every micro-batch must yield the same "
                                 "optimizer phases in the same order")
            if out is not None:
                _add_means(phase_means, self._backward_checked(out), len(gens))
        means.update(phase_means)
        return names

    def _backward_checked(self, out: StepOutput) -> dict[str, float]:
        """The non-finite guard, then the backward of every loss of ``out``; its values as floats."""
        values = self._check_finite(out, self.state.step)
        self._backward(out.losses, self.tcfg.accumulate)
        return values

    def _step_optimizers(self, names: list[str], *, all_reduce: bool) -> None:
        """Clip (each optimizer's own ``grad_clip``), step, zero and schedule the optimizers in ``names``."""
        for name, opt in self.fabric_opts.items():
            if name not in names:
                continue
            if all_reduce:
                _average_gradients(self.params[name], self.world)
            clip = self.settings[name].grad_clip
            if clip > 0:
                self.fabric.clip_gradients(self._any_module(), opt, max_norm=clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            self.scheds[name].step()

    def _any_module(self) -> nn.Module:
        return next(iter(self.wrapped.values()))

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager[Any]:
        stack = contextlib.ExitStack()
        if skip and self.world > 1:
            for net in self.wrapped.values():
                if hasattr(net, "_forward_module"):
                    stack.enter_context(self.fabric.no_backward_sync(net))
        return stack

    def _backward(self, losses: Mapping[str, torch.Tensor], accumulate: int) -> None:
        unknown = set(losses) - set(self.opts)
        if unknown:
            raise ValueError(f"training_step returned losses {sorted(unknown)} without optimizers; "
                             f"optimizers are {list(self.opts)}")
        names = [n for n in self.opts if n in losses]
        for i, name in enumerate(names):
            loss = losses[name] / accumulate
            if len(self.opts) == 1:
                self.fabric.backward(loss)
            else:  # only into this optimizer's parameters; keep the graph for the next loss
                self.fabric.backward(loss, inputs=self.params[name], retain_graph=i < len(names) - 1)

    def _check_finite(self, out: Any, step: int) -> dict[str, float]:
        """Loss and log values as floats; ``NonFiniteLossError`` naming the first bad term."""
        values = {f"loss/{k}": float(v.detach()) for k, v in out.losses.items()}
        values.update({f"train/{k}": float(v) for k, v in out.logs.items()})
        bad = next((k for k, v in values.items() if not math.isfinite(v)), None)
        if self.world > 1:  # every rank must stop together
            flag = self.fabric.all_reduce(torch.tensor(0.0 if bad is None else 1.0), reduce_op="sum")
            if bad is None and float(flag) > 0:
                bad = "(another rank)"
        if bad is not None:
            shown = values.get(bad, float("nan"))
            raise NonFiniteLossError(
                f"non-finite loss at step {step}: {bad} = {shown}; stopped, the last good checkpoint "
                f"is kept in {self.ckpt_dir}"
            )
        return values

    # ------------------------------------------------------------------ evaluation and checkpoints
    def _evaluate_and_checkpoint(self) -> None:
        improved, error = False, None
        if self.rank0:
            try:
                result = evaluate_nets(self.method, merge_nets(self.nets, self.frozen), split=self.tcfg.eval_split,
                                       out_dir=self.run_dir / "eval" / self.tcfg.eval_split)
                improved = self._record_eval(result)
            except Exception as err:  # keep the training progress, then fail
                error = err
            keep_in_eval(self.frozen)
        improved, failed = self.fabric.broadcast((improved, error is not None), src=0)
        self._checkpoint(best=bool(improved) and not failed)
        if error is not None:
            raise error
        if failed:
            raise RuntimeError("evaluation failed on rank 0")

    def _record_eval(self, result: EvalResult) -> bool:
        state, step, split = self.state, self.state.step, self.tcfg.eval_split
        monitor = self.tcfg.monitor or result.monitor
        state.last_eval = {"step": step, "split": split, "metrics": dict(result.metrics), "monitor": monitor,
                           "per_class": result.per_class}
        write_metrics(self.run_dir, result, step=step, split=split)
        self.logger.log(step, {f"{split}/{k}": v for k, v in result.metrics.items() if _is_number(v)})
        self.bar.print(f"step {step} {split}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()
                                                           if _is_number(v)))
        if self.tcfg.monitor and self.tcfg.monitor not in result.metrics:
            raise ValueError(f"trainer.monitor {self.tcfg.monitor!r} is not a metric of this evaluation; "
                             f"choose one of {', '.join(result.metrics)}")
        value = result.metrics.get(monitor) if monitor else None
        if value is None or not math.isfinite(value):
            state.best_step = step  # no usable monitor: best = latest
            return True
        sign = 1.0 if self.tcfg.monitor_mode == "max" else -1.0
        if state.best_value is None or sign * value > sign * state.best_value:
            state.best_value, state.best_step = float(value), step
            return True
        return False

    def _checkpoint(self, *, best: bool) -> None:
        bad = next((f"{n}.{k}" for n, net in self.nets.items() for k, p in net.named_parameters()
                    if not bool(torch.isfinite(p).all())), None)
        if bad is not None:  # a finite loss with non-finite gradients: never overwrite a good checkpoint
            raise NonFiniteLossError(f"non-finite weights in {bad} after step {self.state.step}; stopped, the last "
                                     f"good checkpoint is kept in {self.ckpt_dir}")
        rngs = self._gather(rng_state())
        if self.rank0:
            data = serialize(self._state_dict(rngs))
            atomic_write(data, self.ckpt_dir / "last.ckpt")
            if best:  # one file on disk for both names until last.ckpt moves on
                atomic_copy(self.ckpt_dir / "last.ckpt", self.ckpt_dir / "best.ckpt")
        self.fabric.barrier()

    def _gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _state_dict(self, rngs: list[Any]) -> dict[str, Any]:
        state = self.state
        method_state = getattr(self.method, "state_dict", None)
        return {
            "format": FORMAT, "version": 1, "method": self.method.name, "config": config_to_dict(self.cfg),
            "nets": {n: net.state_dict() for n, net in self.nets.items()},
            "optimizers": {n: o.state_dict() for n, o in self.opts.items()},
            "schedulers": {n: s.state_dict() for n, s in self.scheds.items()},
            "precision": self.fabric.strategy.precision.state_dict(),
            "step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
            "world_size": self.world, "rng": rngs,
            "logger": {"step": state.step, "csv_offset": self.logger.offset()},
            "best": {"value": state.best_value, "step": state.best_step}, "last_eval": state.last_eval,
            "method_state": method_state() if callable(method_state) else None,
        }

    def _restore(self, path: Path) -> int | None:
        ckpt = check_format(load_checkpoint(path), path)
        if ckpt["method"] != self.method.name:
            from lowlabel.errors import UserError

            raise UserError(f"{path}: checkpoint of method {ckpt['method']!r}, cannot resume {self.method.name!r}")
        changed = _changed_keys(ckpt["config"], config_to_dict(self.cfg))
        if changed and self.rank0:
            print(f"warning: resuming {path} with a changed config: {', '.join(changed)}", file=sys.stderr)
        load_nets(self.nets, ckpt["nets"], source=path)
        for name, opt in self.opts.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        for name, sched in self.scheds.items():
            sched.load_state_dict(ckpt["schedulers"][name])
        self.fabric.strategy.precision.load_state_dict(ckpt["precision"])
        state = self.state
        state.step, state.epoch, state.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        state.best_value, state.best_step = ckpt["best"]["value"], ckpt["best"]["step"]
        state.last_eval = dict(ckpt["last_eval"])
        if ckpt.get("method_state") is not None and hasattr(self.method, "load_state_dict"):
            self.method.load_state_dict(ckpt["method_state"])
        rngs = ckpt["rng"]
        if ckpt["world_size"] == self.world:
            set_rng_state(rngs[self.fabric.global_rank])
        elif self.rank0:
            print(f"warning: {path} was written by {ckpt['world_size']} process(es), this run has {self.world}; "
                  "the data order and random streams will not continue exactly", file=sys.stderr)
        return int(ckpt["logger"]["csv_offset"])


def evaluate_nets(method: Any, nets: Mapping[str, nn.Module], *, split: str, out_dir: Path) -> EvalResult:
    """``method.evaluate`` in eval mode without gradients; every module's train/eval flag is restored after.

    ``nets`` are the trained networks plus the frozen ones (``frozen.merge_nets``), as ``evaluate`` takes them.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with eval_mode(nets.values()):
        result = method.evaluate(nets, split, Path(out_dir))
    return result


def _broadcast_state(net: nn.Module) -> None:
    """Rank 0's parameters and buffers into ``net`` on every rank, in place (DDP does this for the modules it wraps,
    so a momentum copy or a queue built from a differently seeded rank would otherwise start apart)."""
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in net.state_dict().values():
            dist.broadcast(tensor, src=0)


def _add_means(means: dict[str, float], values: Mapping[str, float], count: int) -> None:
    """Add ``values / count`` into ``means`` (the mean over ``count`` micro-batches)."""
    for key, value in values.items():
        means[key] = means.get(key, 0.0) + value / count


def _phase_text(names: list[str] | None) -> str:
    return "no more phases" if names is None else f"a phase stepping {names}"


def _average_gradients(params: list[torch.Tensor], world: int) -> None:
    """Average ``params``' gradients over the ranks: one flat buffer, one ``all_reduce``, divided by ``world``.

    A parameter keeps no gradient only if it has none on every rank; a rank without one contributes zeros.
    """
    import torch.distributed as dist

    if not params:
        return
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in params))
    present = [float(p.grad is not None) for p in params]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype) for p in params]
                     + [torch.tensor(present, dtype=dtype, device=params[0].device)])  # (sum numel + len(params),)
    dist.all_reduce(flat)
    grads, counts = flat[:-len(params)] / world, flat[-len(params):]
    offset = 0
    for p, count in zip(params, counts.tolist(), strict=True):
        if count > 0:
            grad = grads[offset:offset + p.numel()].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = grad.clone()
            else:
                p.grad.copy_(grad)
        offset += p.numel()


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(dict.fromkeys([*old, *new]))
        return [k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eval_result(last_eval: Mapping[str, Any]) -> EvalResult:
    return EvalResult(metrics=dict(last_eval.get("metrics", {})), per_class=dict(last_eval.get("per_class", {})),
                      monitor=str(last_eval.get("monitor", "")))
