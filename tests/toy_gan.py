"""A tiny GAN for engine and CLI tests: ordered optimizer phases, per-optimizer settings, a frozen network.

G maps 2-D noise to 2-D points; D scores a point from the point and fixed random features of it (the
frozen network ``features``, a seeded ``Linear -> Tanh -> Dropout``: in train mode its dropout would
change the output). LSGAN losses (Mao et al., ICCV 2017, a = 0, b = c = 1), batch means::

    L_D = 0.5 * mean((D(real) - 1)^2) + 0.5 * mean(D(G(z))^2)      phase 1, steps D
    L_G = 0.5 * mean((D(G(z)) - 1)^2)                               phase 2, steps G (against the updated D)

The noise ``z`` is part of the data (a fixed vector per sample), so a run depends on the global RNG
only through D's optional dropout, and a DDP run sees exactly the samples of a single process.
``trace`` records what the method saw in each phase (D's weights, the frozen net's mode) for tests.

Register it for the CLI like the toy method: ``monkeypatch.setitem(lowlabel.methods.METHODS, "toy_gan",
"tests.toy_gan")`` or ``python tests/toy_cli.py train toy_gan ...``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lowlabel.methods.base import (
    EvalResult,
    Frozen,
    OptimConfig,
    StepOutput,
    TrainerConfig,
    build_optimizer,
)
from lowlabel.models.weights import file_sha256


@dataclass
class GanData:
    num_train: int = 64
    num_val: int = 32
    hidden: int = 16
    features: int = 8  # width of the frozen feature extractor D sees (0 = no frozen network)
    features_file: str = ""  # load the frozen extractor's state dict from this file ("" = seeded random weights)
    dropout: float = 0.0  # in D: the step then depends on the global torch RNG (resume must restore it)
    retrain_frozen: bool = False  # the G phase ends with nets["features"].train() (the engine must undo it)
    step_sleep: float = 0.0  # seconds per training step (gives kill tests time to strike)
    dump_dir: str = ""  # if set, every rank saves its final weights to <dump_dir>/rank<r>.pt (DDP test)
    data_seed: int = 123


@dataclass
class GanConfig:
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=8, max_steps=10, log_every=1))
    optim_g: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="adam", lr=2e-3, betas=(0.5, 0.999), weight_decay=0.0))
    optim_d: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="adam", lr=1e-3, betas=(0.5, 0.9), weight_decay=0.0, schedule="cosine"))
    data: GanData = field(default_factory=GanData)


CONFIG = GanConfig


def make_data(cfg: GanData, n: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real points (n, 2) from a fixed anisotropic Gaussian and ``n`` noise vectors (n, 2)."""
    gen = torch.Generator().manual_seed(cfg.data_seed + offset)
    real = torch.randn(n, 2, generator=gen) * torch.tensor([0.5, 0.25]) + torch.tensor([2.0, -1.0])
    return real, torch.randn(n, 2, generator=gen)


def make_features(cfg: GanData) -> Frozen | None:
    """The frozen extractor (2 -> features), from ``features_file`` or seeded: the same on every rebuild."""
    if cfg.features == 0:
        return None
    module = nn.Sequential(nn.Linear(2, cfg.features), nn.Tanh(), nn.Dropout(0.5))
    if cfg.features_file:
        module.load_state_dict(torch.load(cfg.features_file, weights_only=True))
        return Frozen(module, source=cfg.features_file, sha256=file_sha256(Path(cfg.features_file)))
    gen = torch.Generator().manual_seed(cfg.data_seed + 99)
    with torch.no_grad():
        module[0].weight.copy_(torch.randn(cfg.features, 2, generator=gen))
        module[0].bias.copy_(torch.randn(cfg.features, generator=gen))
    return Frozen(module, source="")


class PointDataset(torch.utils.data.Dataset):
    def __init__(self, real: torch.Tensor, z: torch.Tensor):
        self.real, self.z = real, z

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"real": self.real[i], "z": self.z[i], "index": torch.tensor(i)}


class ToyGAN:
    """``nets = {"D", "G"}`` (one Adam each, own lr/betas/schedule), frozen ``{"features"}``."""

    name = "toy_gan"

    def __init__(self, config: GanConfig):
        self.config = config
        d = config.data
        self._nets: dict[str, nn.Module] = {
            "D": nn.Sequential(nn.Linear(2 + d.features, d.hidden), nn.LeakyReLU(0.2), nn.Dropout(d.dropout),
                               nn.Linear(d.hidden, 1)),
            "G": nn.Sequential(nn.Linear(2, d.hidden), nn.ReLU(), nn.Linear(d.hidden, 2)),
        }
        self._features = make_features(d)
        self.seen: list[int] = []  # sample indices consumed, in order
        self.trace: list[dict] = []  # per phase: {"step", "phase", "D": flat weights, "features_training"}
        self.after_nets: list[str] = []  # the names after_optimizer_step received
        self.eval_nets: dict[str, bool] = {}  # name -> training flag, as evaluate saw them

    def networks(self) -> dict[str, nn.Module]:
        return self._nets

    def frozen_networks(self) -> dict[str, Frozen]:
        return {} if self._features is None else {"features": self._features}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"D": build_optimizer(nets["D"].parameters(), self.config.optim_d),
                "G": build_optimizer(nets["G"].parameters(), self.config.optim_g)}

    def optim_configs(self) -> dict[str, OptimConfig]:
        return {"D": self.config.optim_d, "G": self.config.optim_g}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return PointDataset(*make_data(self.config.data, self.config.data.num_train, 1))

    def critic(self, nets: Mapping[str, nn.Module], x: torch.Tensor) -> torch.Tensor:
        """D's score (B, 1) of points ``x`` (B, 2), from ``[x, features(x)]`` (B, 2 + features)."""
        if "features" in nets:
            x = torch.cat([x, nets["features"](x)], dim=1)
        return nets["D"](x)

    def training_step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor],
                      step: int) -> Iterator[StepOutput]:
        self.seen.extend(batch["index"].tolist())
        if self.config.data.step_sleep:
            time.sleep(self.config.data.step_sleep)
        self._record(nets, step, "D")
        fake = nets["G"](batch["z"])  # (B, 2); back-propagated into G only in the G phase
        d_real, d_fake = self.critic(nets, batch["real"]), self.critic(nets, fake.detach())  # (B, 1) each
        loss_d = 0.5 * (d_real - 1).pow(2).mean() + 0.5 * d_fake.pow(2).mean()
        yield StepOutput(losses={"D": loss_d}, logs={"d_real": float(d_real.detach().mean()),
                                                     "d_fake": float(d_fake.detach().mean())})
        self._record(nets, step, "G")
        loss_g = 0.5 * (self.critic(nets, fake) - 1).pow(2).mean()
        if self.config.data.retrain_frozen and "features" in nets:
            nets["features"].train()
        yield StepOutput(losses={"G": loss_g}, logs={"g_dist": float((fake.detach().mean(0) - batch["real"].mean(0))
                                                                     .norm())})

    def _record(self, nets: Mapping[str, nn.Module], step: int, phase: str) -> None:
        flat_d = torch.cat([p.detach().flatten() for p in self._nets["D"].parameters()]).clone()
        features = nets.get("features")
        self.trace.append({"step": step, "phase": phase, "D": flat_d,
                           "features_training": None if features is None else features.training})

    def after_optimizer_step(self, nets: Mapping[str, nn.Module], step: int) -> None:
        self.after_nets = sorted(nets)
        if self.config.data.dump_dir and step == self.config.trainer.max_steps - 1:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            states = {name: net.state_dict() for name, net in self._nets.items()}
            torch.save(states, Path(self.config.data.dump_dir) / f"rank{rank}.pt")

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        self.eval_nets = {name: net.training for name, net in nets.items()}
        real, z = make_data(self.config.data, self.config.data.num_val, 2 if split == "val" else 3)
        fake = nets["G"](z)  # (N, 2)
        dist = (fake - real).norm(dim=1)  # (N,)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "per_image.csv").write_text("image_id,score\n" + "".join(f"{i},{-float(e)}\n"
                                                                           for i, e in enumerate(dist)))
        mean_dist = float((fake.mean(0) - real.mean(0)).norm())
        metrics = {"mean_dist": mean_dist, "neg_mean_dist": -mean_dist, "d_fake": float(self.critic(nets, fake).mean())}
        if "features" in nets:
            metrics["feature_dist"] = float((nets["features"](fake).mean(0) - nets["features"](real).mean(0)).norm())
        return EvalResult(metrics=metrics, monitor="neg_mean_dist")


def build(cfg: GanConfig) -> ToyGAN:
    return ToyGAN(cfg)
