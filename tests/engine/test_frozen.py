"""Frozen networks: moved to the device, kept in eval mode without gradients, never trained or checkpointed,
recorded in frozen.json (with a warning on resume when their file changed), passed to evaluate_run; and
state-only networks (buffers, no parameters) still checkpointed."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import lowlabel.methods
from lowlabel.engine import evaluate_run, fit, load_method_from_run, seed_everything
from lowlabel.engine.checkpoint import load_checkpoint
from lowlabel.methods.base import Frozen
from tests.engine.helpers import gan_config
from tests.toy_gan import build, make_features


def train(cfg, run_dir, **kwargs):
    seed_everything(cfg.trainer.seed)
    method = build(cfg)
    fit(method, run_dir=run_dir, progress=False, **kwargs)
    return method


def test_frozen_network_is_moved_kept_in_eval_and_never_trained(tmp_path, monkeypatch):
    from lightning.fabric import Fabric

    moved = []
    real_to_device = Fabric.to_device
    monkeypatch.setattr(Fabric, "to_device", lambda self, obj: moved.append(obj) or real_to_device(self, obj))
    cfg = gan_config(trainer={"max_steps": 4, "eval_every": 2}, data={"retrain_frozen": True})
    gan = train(cfg, tmp_path / "run")
    features = gan.frozen_networks()["features"].module
    assert any(obj is features for obj in moved)
    # the method calls features.train() at the end of every G phase; every step starts in eval mode again
    assert [t["features_training"] for t in gan.trace if t["phase"] == "D"] == [False] * 4
    assert not any(p.requires_grad for p in features.parameters())
    fresh = make_features(cfg.data).module
    for key, value in fresh.state_dict().items():
        assert torch.equal(features.state_dict()[key], value), key
    assert gan.after_nets == ["D", "G", "features"]
    assert gan.eval_nets == {"D": False, "G": False, "features": False}
    assert not features.training  # evaluate restored train mode; the engine put features back in eval

    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert set(ckpt["nets"]) == {"D", "G"} and set(ckpt["optimizers"]) == {"D", "G"}
    assert json.loads((tmp_path / "run" / "frozen.json").read_text()) == {
        "features": {"source": "", "sha256": "", "parameters": 2 * 8 + 8}
    }


def test_evaluate_run_passes_the_frozen_networks(tmp_path, monkeypatch):
    monkeypatch.setitem(lowlabel.methods.METHODS, "toy_gan", "tests.toy_gan")
    cfg = gan_config(trainer={"max_steps": 3})
    gan = train(cfg, tmp_path / "run")
    result, _ = evaluate_run(tmp_path / "run", split="test", method_name="toy_gan")
    nets = {**gan.networks(), "features": gan.frozen_networks()["features"].module}
    with torch.no_grad():
        expected = gan.evaluate(nets, "test", tmp_path / "ref")
    assert result.metrics["feature_dist"] == pytest.approx(expected.metrics["feature_dist"], rel=1e-6)
    loaded = load_method_from_run(tmp_path / "run", method_name="toy_gan")
    assert sorted(loaded.nets) == ["D", "G", "features"] and list(loaded.frozen) == ["features"]
    assert loaded.method.eval_nets == {} and not any(p.requires_grad for p in loaded.nets["features"].parameters())


def test_no_frozen_json_without_frozen_networks(tmp_path):
    train(gan_config(trainer={"max_steps": 1}, data={"features": 0}), tmp_path / "run")
    assert not (tmp_path / "run" / "frozen.json").exists()


def test_a_name_in_both_networks_and_frozen_networks_is_an_error(tmp_path):
    cfg = gan_config(trainer={"max_steps": 1})
    seed_everything(0)
    gan = build(cfg)
    gan.frozen_networks = lambda: {"D": Frozen(nn.Linear(2, 2))}
    with pytest.raises(ValueError, match=r"network name\(s\) \['D'\] are used by both networks\(\) and frozen"):
        fit(gan, run_dir=tmp_path / "run", progress=False)


def test_resume_warns_when_a_frozen_file_changed(tmp_path, capsys):
    weights = tmp_path / "features.pt"
    torch.save(make_features(gan_config().data).module.state_dict(), weights)
    cfg = gan_config(trainer={"max_steps": 2}, data={"features_file": str(weights)})
    first = train(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "frozen.json").read_text())["features"]
    assert record["source"] == str(weights) and record["sha256"] == first.frozen_networks()["features"].sha256
    assert len(record["sha256"]) == 64

    train(cfg, tmp_path / "run", resume="auto")  # same file: no warning
    assert "frozen network" not in capsys.readouterr().err

    state = torch.load(weights)
    state["0.bias"] += 1
    torch.save(state, weights)
    train(gan_config(trainer={"max_steps": 3}, data={"features_file": str(weights)}), tmp_path / "run", resume="auto")
    lines = [line for line in capsys.readouterr().err.splitlines() if "frozen network" in line]
    assert len(lines) == 1 and "'features'" in lines[0] and str(weights) in lines[0]
    assert record["sha256"] in lines[0]


def test_a_network_with_buffers_only_is_moved_and_checkpointed(tmp_path):
    """State such as a memory bank: no parameters, so no optimizer and no DDP; it is still checkpointed."""

    class Memory(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("bank", torch.zeros(3))

    cfg = gan_config(trainer={"max_steps": 3})
    seed_everything(0)
    gan = build(cfg)
    memory = Memory()
    gan.networks()["memory"] = memory
    real_after = gan.after_optimizer_step

    def after(nets, step):
        real_after(nets, step)
        nets["memory"].bank[step] = step + 1.0

    gan.after_optimizer_step = after
    fit(gan, run_dir=tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert torch.equal(ckpt["nets"]["memory"]["bank"], torch.tensor([1.0, 2.0, 3.0]))
    assert set(ckpt["optimizers"]) == {"D", "G"} and torch.equal(memory.bank, torch.tensor([1.0, 2.0, 3.0]))


def test_from_pretrained_adds_the_frozen_networks(tmp_path, monkeypatch):
    from lowlabel.pretrained import from_pretrained, save_pretrained

    monkeypatch.setitem(lowlabel.methods.METHODS, "toy_gan", "tests.toy_gan")
    gan = train(gan_config(trainer={"max_steps": 2}), tmp_path / "run")
    save_pretrained(gan, tmp_path / "export")
    loaded = from_pretrained(tmp_path / "export")
    assert sorted(loaded.nets) == ["D", "G", "features"] and list(loaded.frozen) == ["features"]
    for name in ("D", "G"):  # the saved weights, not a fresh build
        for key, value in gan.networks()[name].state_dict().items():
            assert torch.equal(loaded.nets[name].state_dict()[key], value), (name, key)
    features = loaded.nets["features"]
    assert not features.training and not any(p.requires_grad for p in features.parameters())
