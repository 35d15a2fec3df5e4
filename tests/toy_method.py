"""A tiny method for engine and CLI tests: regression with an MLP on seeded random tensors, CPU only.

It is deliberately small and deterministic. Knobs in ``ToyData`` exercise engine features:
``dropout`` makes the result depend on the global torch RNG (so resume must restore it),
``two_optimizers`` splits the model into two networks with one optimizer each,
``nan_at_step`` makes the loss NaN at that step (the non-finite guard).

Register it for the CLI without touching the real ``METHODS`` list::

    monkeypatch.setitem(lowlabel.methods.METHODS, "toy", "tests.toy_method")

or run ``python tests/toy_cli.py ...`` in a subprocess.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lowlabel.methods.base import EvalResult, OptimConfig, StepOutput, TrainerConfig, build_optimizer


@dataclass
class ToyData:
    num_train: int = 48
    num_val: int = 32
    dim: int = 6
    hidden: int = 16
    dropout: float = 0.0
    two_optimizers: bool = False
    nan_at_step: int = -1  # step at which the loss becomes NaN (-1 = never)
    step_sleep: float = 0.0  # seconds per training step (gives kill tests time to strike)
    dump_dir: str = ""  # if set, every rank saves its final weights to <dump_dir>/rank<r>.pt (DDP test)
    data_seed: int = 123


@dataclass
class ToyConfig:
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=8, max_steps=10, log_every=1))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.05, weight_decay=0.0))
    data: ToyData = field(default_factory=ToyData)


CONFIG = ToyConfig


def make_data(cfg: ToyData, n: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs (n, dim) and targets (n, 1) of a fixed random linear function plus noise."""
    gen = torch.Generator().manual_seed(cfg.data_seed)
    w = torch.randn(cfg.dim, 1, generator=gen)
    gen = torch.Generator().manual_seed(cfg.data_seed + offset)
    x = torch.randn(n, cfg.dim, generator=gen)
    return x, x @ w + 0.1 * torch.randn(n, 1, generator=gen)


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i], "index": torch.tensor(i)}


class Toy:
    """Two-layer MLP regression; ``nets = {"body", "head"}`` when ``two_optimizers`` else ``{"model"}``."""

    name = "toy"

    def __init__(self, config: ToyConfig):
        self.config = config
        d = config.data
        body = nn.Sequential(nn.Linear(d.dim, d.hidden), nn.ReLU(), nn.Dropout(d.dropout))
        head = nn.Linear(d.hidden, 1)
        self._nets: dict[str, nn.Module] = (
            {"body": body, "head": head} if d.two_optimizers else {"model": nn.Sequential(body, head)}
        )
        self.seen: list[int] = []  # indices consumed, for data-order tests
        self.ema_updates = 0

    def networks(self) -> dict[str, nn.Module]:
        return self._nets

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {name: build_optimizer(net.parameters(), self.config.optim) for name, net in nets.items()}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return ToyDataset(*make_data(self.config.data, self.config.data.num_train, 1))

    def forward(self, nets: Mapping[str, nn.Module], x: torch.Tensor) -> torch.Tensor:
        if "model" in nets:
            return nets["model"](x)
        return nets["head"](nets["body"](x))

    def training_step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        self.seen.extend(batch["index"].tolist())
        if self.config.data.step_sleep:
            time.sleep(self.config.data.step_sleep)
        loss = nn.functional.mse_loss(self.forward(nets, batch["x"]), batch["y"])
        if step == self.config.data.nan_at_step:
            loss = loss * float("nan")
        losses = {name: loss for name in nets} if self.config.data.two_optimizers else {"model": loss}
        return StepOutput(losses=losses, logs={"mse": float(loss.detach())})

    def after_optimizer_step(self, nets: Mapping[str, nn.Module], step: int) -> None:
        self.ema_updates += 1
        if self.config.data.dump_dir and step == self.config.trainer.max_steps - 1:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            states = {name: net.state_dict() for name, net in self._nets.items()}
            torch.save(states, Path(self.config.data.dump_dir) / f"rank{rank}.pt")

    def state_dict(self) -> dict[str, int]:
        return {"ema_updates": self.ema_updates}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.ema_updates = int(state["ema_updates"])

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        x, y = make_data(self.config.data, self.config.data.num_val, 2 if split == "val" else 3)
        err = (self.forward(nets, x) - y).pow(2).squeeze(1)  # (N,)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = "".join(f"{i},{-float(e)}\n" for i, e in enumerate(err))
        (out_dir / "per_image.csv").write_text("image_id,score\n" + rows)
        mse = float(err.mean())
        per_class = {"mse": {"first_half": float(err[: len(err) // 2].mean()), "second_half": None}}
        return EvalResult(metrics={"mse": mse, "neg_mse": -mse}, monitor="neg_mse", per_class=per_class)

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """Read ``inputs/*.json`` (lists of ``dim`` floats), write ``out/<name>.json`` predictions."""
        out.mkdir(parents=True, exist_ok=True)
        files = sorted(Path(inputs).glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no .json inputs in {inputs}")
        for path in files:
            x = torch.tensor(json.loads(path.read_text()), dtype=torch.float32).reshape(-1, self.config.data.dim)
            with torch.no_grad():
                pred = self.forward(nets, x).squeeze(1).tolist()
            (out / path.name).write_text(json.dumps(pred))


def build(cfg: ToyConfig) -> Toy:
    return Toy(cfg)
