"""Ordered optimizer phases (a generator ``training_step``), gradient accumulation over phases, and each
optimizer's own settings (lr, betas, schedule, clipping), on the toy GAN and the toy regression."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lowlabel.engine import fit, seed_everything
from lowlabel.methods.base import OptimConfig, StepOutput
from tests.engine.helpers import gan_config, read_csv, toy_config
from tests.toy_gan import build as build_gan
from tests.toy_gan import make_data
from tests.toy_method import build as build_toy


def run(method, run_dir, **kwargs):
    init = {k: copy.deepcopy(v.state_dict()) for k, v in method.networks().items()}
    fit(method, run_dir=run_dir, progress=False, **kwargs)
    return init


def new_gan(cfg):
    seed_everything(cfg.trainer.seed)
    return build_gan(cfg)


def flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def hand_written_gan(cfg, init, seen):
    """The GAN step written out: D's loss, D's Adam step and cosine schedule, then G's loss against the new D."""
    ref = build_gan(cfg)
    D, G = ref.networks()["D"], ref.networks()["G"]
    D.load_state_dict(init["D"])
    G.load_state_dict(init["G"])
    features = ref.frozen_networks()["features"].module.eval()
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.optim_d.lr, betas=cfg.optim_d.betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.optim_g.lr, betas=cfg.optim_g.betas)
    real_all, z_all = make_data(cfg.data, cfg.data.num_train, 1)
    batch, steps = cfg.trainer.batch_size, cfg.trainer.max_steps

    def critic(x):
        return D(torch.cat([x, features(x)], dim=1))

    for step in range(steps):
        idx = torch.tensor(seen[step * batch:(step + 1) * batch])
        real, fake = real_all[idx], G(z_all[idx])
        loss_d = 0.5 * (critic(real) - 1).pow(2).mean() + 0.5 * critic(fake.detach()).pow(2).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        for group in opt_d.param_groups:  # cosine: base * (1 + cos(pi * t / T)) / 2 after t steps
            group["lr"] = cfg.optim_d.lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
        loss_g = 0.5 * (critic(fake) - 1).pow(2).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return D, G


def test_gan_phases_match_a_hand_written_loop(tmp_path):
    cfg = gan_config(trainer={"max_steps": 5})
    gan = new_gan(cfg)
    init = run(gan, tmp_path / "run")
    D, G = hand_written_gan(cfg, init, gan.seen)
    torch.testing.assert_close(flat(gan.networks()["D"]), flat(D), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(flat(gan.networks()["G"]), flat(G), rtol=1e-5, atol=1e-7)


def test_discriminator_steps_before_the_generator_loss_is_computed(tmp_path):
    gan = new_gan(gan_config(trainer={"max_steps": 4}))
    run(gan, tmp_path / "run")
    d_phase = [t["D"] for t in gan.trace if t["phase"] == "D"]
    g_phase = [t["D"] for t in gan.trace if t["phase"] == "G"]
    assert [t["phase"] for t in gan.trace] == ["D", "G"] * 4
    for step in range(4):
        assert not torch.equal(g_phase[step], d_phase[step])  # D stepped between the two phases
        after = d_phase[step + 1] if step < 3 else flat(gan.networks()["D"])
        assert torch.equal(g_phase[step], after)  # the G phase already saw D's weights after its step


def test_accumulated_phases_equal_one_step_on_the_combined_batch(tmp_path):
    big = new_gan(gan_config(trainer={"max_steps": 4, "batch_size": 8}))
    run(big, tmp_path / "big")
    acc = new_gan(gan_config(trainer={"max_steps": 4, "batch_size": 4, "accumulate": 2}))
    run(acc, tmp_path / "acc")
    assert acc.seen == big.seen
    for name in ("D", "G"):
        torch.testing.assert_close(flat(acc.networks()[name]), flat(big.networks()[name]), rtol=1e-5, atol=1e-6)
    logs = {(s, k): v for s, k, v in read_csv(tmp_path / "acc" / "logs" / "metrics.csv")}
    assert {k for _, k in logs} >= {"loss/D", "loss/G", "train/d_real", "train/g_dist", "lr/D", "lr/G"}


def g_first_phases(nets, batch):
    """A step that yields the generator's phase first."""
    yield StepOutput(losses={"G": nets["G"](batch["z"]).pow(2).mean()})
    yield StepOutput(losses={"D": nets["D"](torch.zeros(1, 10)).pow(2).mean()})


def d_only_phase(nets, batch):
    yield StepOutput(losses={"D": nets["D"](torch.zeros(1, 10)).pow(2).mean()})


@pytest.mark.parametrize(("other", "message"), [
    (g_first_phases, r"phase 0: micro-batch 1 yielded a phase stepping \['G'\], micro-batch 0 a phase stepping "
                     r"\['D'\]; every micro-batch must yield the same optimizer phases in the same order"),
    (d_only_phase, r"phase 1: micro-batch 1 yielded no more phases, micro-batch 0 a phase stepping \['G'\]"),
])
def test_micro_batches_with_different_phases_raise(tmp_path, other, message):
    gan = new_gan(gan_config(trainer={"max_steps": 2, "batch_size": 4, "accumulate": 2}))
    real = gan.training_step
    calls = []

    def mismatched(nets, batch, step):
        calls.append(step)
        return real(nets, batch, step) if len(calls) % 2 else other(nets, batch)

    gan.training_step = mismatched
    with pytest.raises(ValueError, match=message):
        run(gan, tmp_path / "run")


def test_an_optimizer_in_two_phases_of_one_step_raises(tmp_path):
    gan = new_gan(gan_config(trainer={"max_steps": 2}))

    def twice(nets, batch, step):
        for _ in range(2):
            yield StepOutput(losses={"D": gan.critic(nets, batch["real"]).pow(2).mean()})

    gan.training_step = twice
    with pytest.raises(ValueError, match=r"optimizer\(s\) \['D'\] named by two phases of step 0"):
        run(gan, tmp_path / "run")


def test_a_one_phase_generator_equals_a_returned_step_output(tmp_path):
    """Both optimizers in one yielded phase is the same step as the plain StepOutput."""
    cfg = toy_config(trainer={"max_steps": 5}, data={"two_optimizers": True})
    seed_everything(0)
    plain = build_toy(cfg)
    run(plain, tmp_path / "plain")
    seed_everything(0)
    phased = build_toy(cfg)
    real = phased.training_step

    def one_phase(nets, batch, step):
        yield real(nets, batch, step)

    phased.training_step = one_phase
    run(phased, tmp_path / "phased")
    for name in ("body", "head"):
        torch.testing.assert_close(flat(phased.networks()[name]), flat(plain.networks()[name]), rtol=0, atol=0)


def test_each_optimizer_follows_its_own_lr_and_schedule(tmp_path):
    cfg = gan_config(trainer={"max_steps": 6},
                     optim_g={"lr": 0.004, "schedule": "step", "step_size": 2, "gamma": 0.5, "betas": (0.3, 0.99)},
                     optim_d={"lr": 0.001, "schedule": "cosine", "betas": (0.5, 0.9)})
    gan = new_gan(cfg)
    run(gan, tmp_path / "run")
    rows = read_csv(tmp_path / "run" / "logs" / "metrics.csv")
    lr_g = {s: v for s, k, v in rows if k == "lr/G"}
    lr_d = {s: v for s, k, v in rows if k == "lr/D"}
    # after s optimizer steps: G = 0.004 * 0.5 ** (s // 2); D = 0.001 * (1 + cos(pi * s / 6)) / 2
    assert lr_g == pytest.approx({s: 0.004 * 0.5 ** (s // 2) for s in range(1, 7)})
    assert lr_d == pytest.approx({s: 0.001 * 0.5 * (1 + math.cos(math.pi * s / 6)) for s in range(1, 7)}, abs=1e-12)
    from lowlabel.engine.checkpoint import load_checkpoint

    groups = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["optimizers"]
    assert groups["G"]["param_groups"][0]["betas"] == (0.3, 0.99)
    assert groups["D"]["param_groups"][0]["betas"] == (0.5, 0.9)


@pytest.mark.parametrize("phased", [False, True])
def test_clipping_one_optimizer_leaves_the_other_alone(tmp_path, phased):
    """body and head share one loss; clipping head's gradient to norm 1e-3 must not touch body's (one SGD step)."""
    sgd = OptimConfig(lr=0.1, momentum=0.0, weight_decay=0.0)

    def trained(clip_head: float, folder: str):
        seed_everything(0)
        method = build_toy(toy_config(trainer={"max_steps": 1}, data={"two_optimizers": True}))
        method.optim_configs = lambda: {"body": sgd, "head": OptimConfig(lr=0.1, momentum=0.0, weight_decay=0.0,
                                                                         grad_clip=clip_head)}
        # head first: when it is clipped, body's gradient is there too (stepping body would zero it)
        method.optimizers = lambda nets: {n: torch.optim.SGD(nets[n].parameters(), lr=0.1) for n in ("head", "body")}
        if phased:
            real = method.training_step

            def one_phase(nets, batch, step):
                yield real(nets, batch, step)

            method.training_step = one_phase
        init = run(method, tmp_path / folder)
        return method, init

    clipped, init = trained(1e-3, "clipped")
    free, _ = trained(0.0, "free")
    body, head = clipped.networks()["body"], clipped.networks()["head"]
    torch.testing.assert_close(flat(body), flat(free.networks()["body"]), rtol=0, atol=0)
    head_update = flat(head) - torch.cat([v.flatten() for v in init["head"].values()])
    assert float(head_update.norm()) == pytest.approx(0.1 * 1e-3, rel=1e-4)  # lr * clip
    assert float((flat(free.networks()["head"]) - flat(head)).norm()) > 1e-3


def _average_in_two_processes(rank: int, init_file: str) -> None:
    """Rank r: p1.grad = r + 1 (everywhere), p2.grad = 4 on rank 1 only, p3 without gradient."""
    import torch.distributed as dist

    from lowlabel.engine.loop import _average_gradients

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        p1, p2, p3 = (nn_param(shape) for shape in ((2, 3), (4,), (1,)))
        p1.grad = torch.full((2, 3), rank + 1.0)
        if rank == 1:
            p2.grad = torch.full((4,), 4.0)
        _average_gradients([p1, p2, p3], 2)
        assert torch.equal(p1.grad, torch.full((2, 3), 1.5))
        assert torch.equal(p2.grad, torch.full((4,), 2.0))  # rank 0 had none: it counted as zeros
        assert p3.grad is None
    finally:
        dist.destroy_process_group()


def nn_param(shape: tuple[int, ...]) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(shape))


def test_explicit_gradient_averaging_over_two_gloo_processes(tmp_path):
    """What a phased DDP step does before an optimizer steps (the full run is in test_resume.py)."""
    torch.multiprocessing.spawn(_average_in_two_processes, args=(str(tmp_path / "init"),), nprocs=2)
