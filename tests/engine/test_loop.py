"""The training loop on the toy method: run folder, agreement with a hand-written loop, accumulation,
several optimizers, LR schedule, best checkpoint, non-finite guard, evaluate_run."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import yaml

import lowlabel.data
import lowlabel.methods
from lowlabel.engine import evaluate_run, fit, load_method_from_run, seed_everything
from lowlabel.engine.checkpoint import load_checkpoint
from lowlabel.engine.config import load_config_file
from lowlabel.errors import NonFiniteLossError
from tests.engine.helpers import read_csv, toy_config
from tests.toy_method import ToyConfig, build, make_data


def run_toy(cfg: ToyConfig, run_dir, **kwargs):
    seed_everything(cfg.trainer.seed)
    method = build(cfg)
    init = {k: copy.deepcopy(v.state_dict()) for k, v in method.networks().items()}
    result = fit(method, run_dir=run_dir, progress=False, **kwargs)
    return method, init, result


def flat_weights(method) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for net in method.networks().values() for p in net.parameters()])


def test_run_folder_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(lowlabel.data, "_READ_VERSIONS", {})  # what earlier tests in this process resolved
    cfg = toy_config(trainer={"max_steps": 4, "eval_every": 2, "log_every": 1})
    method, _, result = run_toy(cfg, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "env.json", "metrics.json", "logs/metrics.csv", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "eval/val/per_image.csv"):
        assert (run / name).is_file(), name
    assert load_config_file(ToyConfig, run / "config.yaml") == cfg
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == cfg.optim.lr
    env = json.loads((run / "env.json").read_text())
    assert env["seed"] == 0 and env["packages"]["torch"] and "git" in env and env["device"] == "cpu"
    assert env["shapesworld"] == {}  # the toy reads no ShapesWorld folder (test_stages.py: one that does)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["split"] == "val" and metrics["mse"] == result.metrics["mse"]
    rows = read_csv(run / "logs" / "metrics.csv")
    assert [s for s, k, _ in rows if k == "loss/model"] == [1, 2, 3, 4]
    assert [s for s, k, _ in rows if k == "val/mse"] == [2, 4]
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 4 and ckpt["method"] == "toy" and ckpt["method_state"] == {"ema_updates": 4}
    assert method.ema_updates == 4  # after_optimizer_step once per optimizer step


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_matches_a_hand_written_sgd_loop(tmp_path, clip):
    """Plain SGD (no momentum, optional global-norm clipping) written out by hand, on the batches the engine
    fed the method."""
    cfg = toy_config(trainer={"max_steps": 7, "batch_size": 8}, optim={"momentum": 0.0, "lr": 0.05, "grad_clip": clip})
    method, init, _ = run_toy(cfg, tmp_path / "run")
    model = build(cfg).networks()["model"]
    model.load_state_dict(init["model"])
    x, y = make_data(cfg.data, cfg.data.num_train, 1)
    seen = method.seen
    clipped = 0
    for step in range(7):
        idx = torch.tensor(seen[step * 8:(step + 1) * 8])
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        grads = torch.autograd.grad(loss, list(model.parameters()))
        norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
        if clip and norm > clip:  # scale the whole gradient down to norm `clip`
            grads = [g * (clip / norm) for g in grads]
            clipped += 1
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= 0.05 * g
    assert sorted(seen[:48]) == list(range(48))  # one epoch = every sample once
    assert clipped == (7 if clip else 0)
    ours = torch.cat([p.flatten() for p in model.parameters()])
    torch.testing.assert_close(flat_weights(method), ours, rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    big, _, _ = run_toy(toy_config(trainer={"max_steps": 5, "batch_size": 8}), tmp_path / "a")
    acc, _, _ = run_toy(toy_config(trainer={"max_steps": 5, "batch_size": 4, "accumulate": 2}), tmp_path / "b")
    assert acc.seen == big.seen
    torch.testing.assert_close(flat_weights(acc), flat_weights(big), rtol=1e-5, atol=1e-6)


def test_two_optimizers_each_update_their_own_network(tmp_path):
    """Two optimizers on body/head with the same loss == one optimizer on the whole model."""
    one, _, _ = run_toy(toy_config(trainer={"max_steps": 5}), tmp_path / "a")
    two, _, _ = run_toy(toy_config(trainer={"max_steps": 5}, data={"two_optimizers": True}), tmp_path / "b")
    torch.testing.assert_close(flat_weights(two), flat_weights(one), rtol=1e-5, atol=1e-6)
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert set(ckpt["optimizers"]) == {"body", "head"}


def test_step_schedule_and_logged_lr(tmp_path):
    cfg = toy_config(trainer={"max_steps": 8, "log_every": 1},
                     optim={"schedule": "step", "step_size": 3, "gamma": 0.5, "lr": 0.04})
    run_toy(cfg, tmp_path / "run")
    lrs = {s: v for s, k, v in read_csv(tmp_path / "run" / "logs" / "metrics.csv") if k == "lr/model"}
    # after s optimizer steps the scheduler has stepped s times: lr = 0.04 * 0.5 ** (s // 3)
    assert lrs == pytest.approx({s: 0.04 * 0.5 ** (s // 3) for s in range(1, 9)})


def test_best_checkpoint_follows_the_monitor(tmp_path):
    cfg = toy_config(trainer={"max_steps": 12, "eval_every": 2, "monitor": "mse", "monitor_mode": "min"},
                     optim={"lr": 0.2})
    run_toy(cfg, tmp_path / "run")
    evals = {s: v for s, k, v in read_csv(tmp_path / "run" / "logs" / "metrics.csv") if k == "val/mse"}
    assert sorted(evals) == [2, 4, 6, 8, 10, 12]
    best_step = min(evals, key=lambda s: (evals[s], s))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")["step"] == best_step
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 12


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = toy_config(trainer={"max_steps": 10, "ckpt_every": 2}, data={"nan_at_step": 5})
    with pytest.raises(NonFiniteLossError, match=r"step 5: loss/model = nan"):
        run_toy(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 4
    assert all(math.isfinite(float(v.abs().sum())) for v in ckpt["nets"]["model"].values())


def test_evaluate_run_reloads_the_trained_weights(tmp_path, monkeypatch):
    monkeypatch.setitem(lowlabel.methods.METHODS, "toy", "tests.toy_method")
    cfg = toy_config(trainer={"max_steps": 3})
    method, _, _ = run_toy(cfg, tmp_path / "run")
    loaded = load_method_from_run(tmp_path / "run", method_name="toy")
    torch.testing.assert_close(flat_weights(loaded.method), flat_weights(method), rtol=0, atol=0)
    result, folder = evaluate_run(tmp_path / "run", split="test", method_name="toy")
    x, y = make_data(cfg.data, cfg.data.num_val, 3)
    with torch.no_grad():
        sq_err = (method.networks()["model"].eval()(x) - y) ** 2  # (N, 1)
    mse = float(sq_err.mean())
    assert result.metrics["mse"] == pytest.approx(mse, rel=1e-6)
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["step"] == 3
    assert (folder / "eval" / "test" / "per_image.csv").is_file()
    per_class = json.loads((folder / "eval" / "test" / "per_class.json").read_text())
    assert per_class["mse"]["first_half"] == pytest.approx(float(sq_err[:16].mean()))
    assert per_class["mse"]["second_half"] is None


def test_bf16_mixed_precision_runs_and_checkpoints(tmp_path):
    cfg = toy_config(trainer={"max_steps": 3, "precision": "bf16-mixed"})
    _, _, result = run_toy(cfg, tmp_path / "run")
    assert math.isfinite(result.metrics["mse"])
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 3 and "precision" in ckpt


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    """A finite loss whose gradient is NaN poisons the weights; the checkpoint after it must not be written."""
    import tests.toy_method as toy

    real_step = toy.Toy.training_step

    def poisoned(self, nets, batch, step):
        out = real_step(self, nets, batch, step)
        if step == 3:  # sqrt'(0) = inf, times 0 = nan in the gradient; the loss value stays finite
            zero = next(nets["model"].parameters()).sum() * 0
            out.losses["model"] = out.losses["model"] + torch.sqrt(zero) * 0
        return out

    monkeypatch.setattr(toy.Toy, "training_step", poisoned)
    cfg = toy_config(trainer={"max_steps": 8, "ckpt_every": 2})
    with pytest.raises(NonFiniteLossError):
        run_toy(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["nets"]["model"].values())


def test_unknown_monitor_is_a_clear_error(tmp_path):
    cfg = toy_config(trainer={"max_steps": 2, "monitor": "mIoU"})
    with pytest.raises(ValueError, match="trainer.monitor 'mIoU' is not a metric.*mse, neg_mse"):
        run_toy(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 2


def test_a_run_killed_during_the_final_evaluation_resumes_without_retraining(tmp_path, monkeypatch):
    """The weights are checkpointed before the final evaluation, so only the evaluation is redone."""
    import lowlabel.engine.loop as loop

    real_eval = loop.evaluate_nets

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # not an Exception: nothing after this point runs, like SIGKILL

    monkeypatch.setattr(loop, "evaluate_nets", killed)
    cfg = toy_config(trainer={"max_steps": 3})
    with pytest.raises(KeyboardInterrupt):
        method, _, _ = run_toy(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["step"] == 3 and not (tmp_path / "run" / "metrics.json").exists()

    calls = []
    monkeypatch.setattr(loop, "evaluate_nets", lambda *a, **k: calls.append(1) or real_eval(*a, **k))
    seed_everything(cfg.trainer.seed)
    resumed = build(cfg)
    result = fit(resumed, run_dir=tmp_path / "run", resume="auto", progress=False)
    assert calls == [1] and resumed.ema_updates == 3  # no training step ran again
    torch.testing.assert_close(
        torch.cat([v.flatten() for v in ckpt["nets"]["model"].values()]), flat_weights(resumed), rtol=0, atol=0
    )
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["mse"] == result.metrics["mse"]
