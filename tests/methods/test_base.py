"""build_scheduler (lowlabel.methods.base): the LR of every optimizer step against hand-derived factors."""

from __future__ import annotations

import math

import pytest
import torch

from lowlabel.methods.base import OptimConfig, build_optimizer, build_scheduler


def lrs(cfg: OptimConfig, total_steps: int, steps: int) -> list[list[float]]:
    """The LR of each param group at optimizer steps 0..steps-1 (the LR the step is taken with)."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([{"params": [a], "lr": cfg.lr}, {"params": [b], "lr": cfg.lr * 10}], cfg)
    sched = build_scheduler(opt, cfg, total_steps)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def factors(cfg: OptimConfig, total_steps: int, steps: int) -> list[float]:
    got = lrs(cfg, total_steps, steps)
    for backbone, head in got:  # both groups follow the same factor: the head keeps its x10
        assert head == pytest.approx(10 * backbone)
    return [backbone / cfg.lr for backbone, _ in got]


def test_constant() -> None:
    assert factors(OptimConfig(lr=0.1), 5, 5) == pytest.approx([1.0] * 5)


def test_step_multiplies_by_gamma_every_step_size_steps() -> None:
    cfg = OptimConfig(lr=0.1, schedule="step", step_size=3, gamma=0.5)
    assert factors(cfg, 100, 8) == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_poly_is_irn_polyoptimizer() -> None:
    """IRN/SIPE: lr = base * (1 - step / max_step) ** 0.9, step = optimizer steps already taken; 0 from T on."""
    cfg = OptimConfig(lr=0.1, schedule="poly", power=0.9)
    got = factors(cfg, 10, 12)
    assert got[0] == 1.0
    assert got[5] == pytest.approx(0.5**0.9)  # 0.5358867...
    assert got[5] == pytest.approx(0.535886731)
    assert got[9] == pytest.approx(0.1**0.9)  # 0.1258925...
    assert got[10] == 0.0 and got[11] == 0.0  # t is clipped at 1
    assert all(x > y for x, y in zip(got[:10], got[1:11]))


def test_cosine() -> None:
    got = factors(OptimConfig(lr=0.1, schedule="cosine"), 4, 6)
    c = math.sqrt(2) / 4  # cos(pi / 4) / 2
    assert got == pytest.approx([1.0, 0.5 + c, 0.5, 0.5 - c, 0.0, 0.0], abs=1e-12)


def test_linear_warmup_then_the_schedule_at_the_global_step() -> None:
    """Warm-up ramps (s + 1) / W; afterwards the schedule is read at the global step (not shifted by W)."""
    assert factors(OptimConfig(lr=0.1, warmup_steps=4), 10, 6) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    cfg = OptimConfig(lr=0.1, schedule="poly", power=1.0, warmup_steps=2)
    assert factors(cfg, 10, 5) == pytest.approx([0.5, 1.0, 0.8, 0.7, 0.6])
    cfg = OptimConfig(lr=0.1, schedule="step", step_size=2, gamma=0.1, warmup_steps=3)
    assert factors(cfg, 10, 6) == pytest.approx([1 / 3, 2 / 3, 1.0, 0.1, 0.01, 0.01])


def test_multistep_multiplies_by_gamma_at_each_milestone() -> None:
    """detectron2's SOLVER.STEPS: x gamma from each milestone step on (unsorted milestones count the same)."""
    cfg = OptimConfig(lr=0.1, schedule="multistep", milestones=(5, 2), gamma=0.1)
    assert factors(cfg, 100, 7) == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert factors(OptimConfig(lr=0.1, schedule="multistep"), 100, 3) == pytest.approx([1, 1, 1])
