"""Engine overhead: time per optimizer step of ``lowlabel.engine.fit`` vs a bare PyTorch loop.

Both loops train the same small CNN on the same random images with the same batch size,
optimizer and data loader settings, in one process. Step time is measured inside the shared
``training_step`` (time between consecutive calls, after a warm-up), so set-up costs (imports,
Fabric launch, final evaluation and checkpoint) are excluded from both. Runs alternate
(engine, bare, engine, bare, ...) so that background load hits both alike. Reported: the ratio of median
process-CPU time per step (robust to other processes on a shared machine; includes every thread
of this process, e.g. the TensorBoard writer) and the wall-clock ratio.

    .venv/bin/python benchmarks/engine.py [--steps 150] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lowlabel.engine import fit, seed_everything
from lowlabel.methods.base import EvalResult, OptimConfig, StepOutput, TrainerConfig, build_optimizer


@dataclass
class BenchConfig:
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(accelerator="cpu", log_every=10))
    optim: OptimConfig = field(default_factory=OptimConfig)
    num_images: int = 512
    image_size: int = 32


class BenchMethod:
    """A 3-layer CNN classifier on random 32x32 images; records the time of every training_step call."""

    name = "bench"

    def __init__(self, config: BenchConfig):
        self.config = config
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 10),
        )
        gen = torch.Generator().manual_seed(0)
        n, s = config.num_images, config.image_size
        self.images = torch.randn(n, 3, s, s, generator=gen)
        self.labels = torch.randint(0, 10, (n,), generator=gen)
        self.times: list[tuple[float, float]] = []  # (wall, process CPU) at each call

    def networks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"net": build_optimizer(nets["net"].parameters(), self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return torch.utils.data.TensorDataset(self.images, self.labels)

    def training_step(self, nets: Mapping[str, nn.Module], batch: tuple[torch.Tensor, torch.Tensor],
                      step: int) -> StepOutput:
        self.times.append((time.perf_counter(), time.process_time()))
        images, labels = batch
        logits = nets["net"](images)
        loss = nn.functional.cross_entropy(logits, labels)
        return StepOutput(losses={"net": loss}, logs={"acc": float((logits.argmax(1) == labels).float().mean())})

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        return EvalResult(metrics={"dummy": 0.0})


def per_step(times: list[tuple[float, float]], warmup: int) -> tuple[float, float]:
    """Mean (wall, process CPU) seconds between consecutive training_step calls after ``warmup`` steps."""
    n = len(times) - 1 - warmup
    return (times[-1][0] - times[warmup][0]) / n, (times[-1][1] - times[warmup][1]) / n


def run_engine(cfg: BenchConfig, warmup: int) -> tuple[float, float]:
    seed_everything(0)
    method = BenchMethod(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        fit(method, run_dir=Path(tmp) / "run", progress=False)
    return per_step(method.times, warmup)


def run_bare(cfg: BenchConfig, warmup: int) -> tuple[float, float]:
    """The same training written as a plain PyTorch loop (what a user would write by hand)."""
    seed_everything(0)
    method = BenchMethod(cfg)
    nets = method.networks()
    opt = method.optimizers(nets)["net"]
    loader = torch.utils.data.DataLoader(method.train_dataset(), batch_size=cfg.trainer.batch_size, shuffle=True)
    step = 0
    while step < cfg.trainer.max_steps:
        for batch in loader:
            out = method.training_step(nets, batch, step)
            out.losses["net"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step == cfg.trainer.max_steps:
                break
    return per_step(method.times, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BenchConfig()
    cfg.trainer.max_steps = args.steps
    warmup = min(10, args.steps // 5)
    engine, bare = [], []
    run_engine(cfg, warmup)  # untimed: pays the one-off Lightning import
    for i in range(args.repeats):  # alternate the order so that drifting background load hits both
        pair = [("engine", run_engine), ("bare", run_bare)]
        for name, fn in pair if i % 2 == 0 else pair[::-1]:
            (engine if name == "engine" else bare).append(fn(cfg, warmup))

    def med(runs: list[tuple[float, float]], k: int) -> float:
        return statistics.median(r[k] for r in runs)

    result = {
        "cpu_ratio": round(med(engine, 1) / med(bare, 1), 4),
        "wall_ratio": round(med(engine, 0) / med(bare, 0), 4),
        "engine_cpu_ms_per_step": round(1000 * med(engine, 1), 3),
        "bare_cpu_ms_per_step": round(1000 * med(bare, 1), 3),
        "engine_wall_ms_per_step": round(1000 * med(engine, 0), 3),
        "bare_wall_ms_per_step": round(1000 * med(bare, 0), 3),
        "steps": args.steps, "repeats": args.repeats, "batch_size": cfg.trainer.batch_size, "threads": args.threads,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
