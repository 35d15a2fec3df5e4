"""The one training loop, on Lightning Fabric. It calls the method protocol of ``lowlabel.methods.base``.

Call order per optimizer step (``trainer.accumulate`` micro-batches)::

    out = method.training_step(nets, batch, step)         # per micro-batch, backward sync skipped
    backward(out.losses[name] / accumulate)               #   except on the last micro-batch
    clip grads (optim.grad_clip); opt.step(); zero_grad(); sched.step()   # per optimizer, dict order
    method.after_optimizer_step(nets, step)               # EMA / momentum updates
    log / evaluate (rank 0) / checkpoint

Lightning is imported here only, inside :func:`fit`.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowlabel.engine.checkpoint import (
    FORMAT,
    atomic_write,
    check_format,
    load_checkpoint,
    remove_stale_temp_files,
    rng_state,
    serialize,
    set_rng_state,
)
from lowlabel.engine.config import config_to_dict, dump_yaml
from lowlabel.engine.logging import RunLogger, environment_info, write_json, write_metrics
from lowlabel.engine.progress import TrainProgress
from lowlabel.engine.sampler import ResumableSampler
from lowlabel.engine.seeding import seed_everything
from lowlabel.errors import NonFiniteLossError
from lowlabel.methods.base import EvalResult, build_scheduler
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
        self.opts: dict[str, torch.optim.Optimizer] = dict(method.optimizers(self.nets))
        make_scheds = getattr(method, "schedulers", None)
        if make_scheds is not None:
            self.scheds = dict(make_scheds(self.opts, tcfg.max_steps))
        else:
            self.scheds = {n: build_scheduler(o, self.cfg.optim, tcfg.max_steps) for n, o in self.opts.items()}
        self.wrapped: dict[str, nn.Module] = {}
        for name, net in self.nets.items():
            trainable = any(p.requires_grad for p in net.parameters())
            self.wrapped[name] = fabric.setup_module(net) if trainable else fabric.to_device(net)
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
        env["resumed_from"] = None if self.resume_path is None else str(self.resume_path)
        env["resumed_at_step"] = self.state.step if self.resume_path is not None else None
        write_json(self.run_dir / "env.json", env)

    def _train(self) -> None:
        tcfg = self.tcfg
        batches = self._batches()
        after = getattr(self.method, "after_optimizer_step", None)
        while self.state.step < tcfg.max_steps:
            values = self._optimizer_step(batches)
            if after is not None:
                after(self.wrapped, self.state.step)
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
        """``accumulate`` micro-batches, then one step of every optimizer that received a loss."""
        accumulate, step = self.tcfg.accumulate, self.state.step
        sums: dict[str, float] = {}
        stepped: set[str] = set()
        for micro in range(accumulate):
            sync = micro == accumulate - 1
            with self._no_sync(not sync):
                out = self.method.training_step(self.wrapped, next(batches), step)
                values = self._check_finite(out, step)
                self._backward(out.losses, accumulate)
            stepped.update(out.losses)
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value / accumulate
        for name, opt in self.fabric_opts.items():
            if name not in stepped:
                continue
            if self.cfg.optim.grad_clip > 0:
                self.fabric.clip_gradients(self._any_module(), opt, max_norm=self.cfg.optim.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if name in self.scheds:
                self.scheds[name].step()
        for name, opt in self.opts.items():
            sums[f"lr/{name}"] = float(opt.param_groups[0]["lr"])
        return sums

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
                result = evaluate_nets(self.method, self.nets, split=self.tcfg.eval_split,
                                       out_dir=self.run_dir / "eval" / self.tcfg.eval_split)
                improved = self._record_eval(result)
            except Exception as err:  # keep the training progress, then fail
                error = err
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
            if best:
                atomic_write(data, self.ckpt_dir / "best.ckpt")
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
    """``method.evaluate`` in eval mode without gradients; every module's train/eval flag is restored after."""
    modes = [(m, m.training) for net in nets.values() for m in net.modules()]
    for net in nets.values():
        net.eval()
    try:
        with torch.no_grad():
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            result = method.evaluate(nets, split, Path(out_dir))
    finally:
        for module, training in modes:
            module.training = training
    return result


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
