"""DA-WSOL method: one step on 2 images, loss composition, schedule, memory in checkpoints, engine CLI, configs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlabel.data.transforms import collate_dicts
from lowlabel.engine.config import load_config_file
from lowlabel.methods.wsol import da_wsol
from tests.methods.wsol.test_cam import REAL, ROOT, tiny
from tests.methods.wsol.wsol_fake import write_wsol


def da_config(data_root: Path, meta: Path, **da: object) -> da_wsol.DAWSOLConfig:
    cfg = tiny(da_wsol.DAWSOLConfig(), data_root, meta)
    cfg.data = dataclasses.replace(cfg.data, resize_size=72, crop_size=64)  # 8x8 = 64 pixels per image
    cfg.da = dataclasses.replace(cfg.da, num_source=4, num_target=4, **da)
    return cfg


def two_image_batch(method: da_wsol.DAWSOL) -> dict:
    ds = method.train_dataset()
    return collate_dicts([ds[0], ds[2]])


def test_training_step_two_images_loss_is_the_weighted_sum(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = da_wsol.build(da_config(*write_wsol(tmp_path, "CUB", size=64), beta=0.7, univer=2.0))
    nets = method.networks()
    out = method.training_step(nets, two_image_batch(method), 0)
    logs = out.logs
    loss = out.losses["model"]
    assert {"cls", "mmd", "universum", "kept"} <= set(logs) and math.isfinite(loss.item())
    assert loss.item() == pytest.approx(logs["cls"] + 0.7 * logs["mmd"] + 2.0 * logs["universum"], rel=1e-5)
    assert method.tsa.counts.sum() > 0  # memory updated
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in nets["model"].parameters())


def test_before_start_step_only_cross_entropy_and_memory_untouched(tmp_path: Path) -> None:
    method = da_wsol.build(da_config(*write_wsol(tmp_path, "CUB", size=64), start_step=3))
    out = method.training_step(method.networks(), two_image_batch(method), 2)
    assert "mmd" not in out.logs and out.losses["model"].item() == pytest.approx(out.logs["cls"], rel=1e-6)
    assert method.tsa.counts.sum() == 0


def test_memory_is_a_parameterless_network_round_trip(tmp_path: Path) -> None:
    data = write_wsol(tmp_path, "CUB", size=64)
    a = da_wsol.build(da_config(*data))
    a.training_step(a.networks(), two_image_batch(a), 0)
    assert list(a.networks()["tsa"].parameters()) == []  # state, not optimised
    b = da_wsol.build(da_config(*data))
    b.networks()["tsa"].load_state_dict(a.networks()["tsa"].state_dict())
    assert torch.equal(b.tsa.memory, a.tsa.memory) and torch.equal(b.tsa.counts, a.tsa.counts)


def test_same_seed_same_initial_weights_as_cam(tmp_path: Path) -> None:
    from lowlabel.methods.wsol import cam

    data = write_wsol(tmp_path, "CUB")
    w_cam = cam.build(tiny(cam.CAMConfig(), *data)).model.state_dict()
    w_da = da_wsol.build(da_config(*data)).model.state_dict()
    assert all(torch.equal(w_cam[k], w_da[k]) for k in w_cam)


def test_engine_cli_train_evaluate_predict_on_quick_and_wrong_method(tmp_path: Path, capsys) -> None:
    from lowlabel.cli.main import main

    torch.set_num_threads(1)
    run = tmp_path / "run"
    args = ["train", "da_wsol", "--config", str(ROOT / "configs/da_wsol/synth-quick.yaml"), "--max-steps", "2",
            "--trainer.batch_size", "8", "--da.start_step", "0", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "val" and 0 <= metrics["MaxBoxAccV2"] <= 100 and 0 <= metrics["PxAP"] <= 100
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["nets"]["tsa"]["counts"].sum() > 0  # the assigner's memory is saved
    assert main(["evaluate", "da_wsol", "--ckpt", str(run), "--split", "test"]) == 0
    assert json.loads((run / "metrics.json").read_text())["split"] == "test"
    assert (run / "eval" / "test" / "per_image.csv").is_file()
    images = sorted((run / "eval" / "test" / "samples").glob("*.npz"))
    assert images
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    from lowlabel.data import resolve_root

    src = sorted((resolve_root("synth:quick", "wsol") / "images" / "ShapesWorld" / "test").glob("*.jpg"))[:2]
    for path in src:
        (inputs / path.name).write_bytes(path.read_bytes())
    assert main(["predict", "da_wsol", "--ckpt", str(run), "--input", str(inputs), "--out", str(tmp_path / "p")]) == 0
    assert len(json.loads((tmp_path / "p" / "boxes.json").read_text())) == 2
    assert len(list((tmp_path / "p").glob("*_cam.png"))) == 2
    capsys.readouterr()
    assert main(["evaluate", "cam", "--ckpt", str(run)]) != 0
    err = capsys.readouterr().err.strip()
    assert "da_wsol" in err and "cam" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("name", "layout", "key"), REAL)
def test_real_config_runs_on_fake_layout(name: str, layout: str, key: str, tmp_path: Path) -> None:
    from lowlabel.engine import fit

    cfg = load_config_file(da_wsol.CONFIG, ROOT / "configs" / "da_wsol" / f"{name}.yaml")
    assert cfg.data.dataset == layout and cfg.da.num_source == cfg.da.num_target == 32 and cfg.da.start_step > 0
    data_root, meta = write_wsol(tmp_path, layout, size=64)
    mask_root = {"mask_root": str(data_root)} if layout == "OpenImages" else {}
    cfg = tiny(cfg, data_root, meta, **mask_root)
    cfg.data = dataclasses.replace(cfg.data, resize_size=72, crop_size=64)
    cfg.da = dataclasses.replace(cfg.da, start_step=0, num_source=4, num_target=4)
    method = da_wsol.build(cfg)
    result = fit(method, run_dir=tmp_path / "run", progress=False)
    assert np.isfinite(result.metrics[key]) and method.tsa.counts.sum() > 0
