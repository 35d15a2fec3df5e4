"""The unpaired translators (``cut``, ``lgcl``): ordered phases, the LGCL extension's state, data errors, evaluation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlabel.engine import fit
from lowlabel.errors import DataError
from lowlabel.methods.base import TrainerConfig
from lowlabel.methods.cross_domain import cut, lgcl
from lowlabel.methods.cross_domain.translation import collate_pairs, translate_any_size

H, W = 32, 48  # the smallest convenient size: /8 for the PatchGAN, 16 local patches of 8 x 12


def write_domains(root: Path, *, n: int = 4, size: tuple[int, int] = (H, W), classes: tuple[str, ...] = ("car",
                  "person")) -> Path:
    """A CUT-style domains folder: trainA (clear), trainB (foggy), testB + annotations/testB.json, testB_clean."""
    gen = np.random.default_rng(0)
    h, w = size
    images, annotations = [], []
    for split in ("trainA", "trainB", "testB", "testB_clean"):
        (root / split).mkdir(parents=True)
    for i in range(n):
        clean = gen.integers(0, 256, (h, w, 3), dtype=np.uint8)
        fog = (0.5 * clean + 100).astype(np.uint8)
        Image.fromarray(clean).save(root / "trainA" / f"a{i}.png")
        Image.fromarray(fog).save(root / "trainB" / f"b{i}.png")
        Image.fromarray(fog).save(root / "testB" / f"t{i}.png")
        Image.fromarray(clean).save(root / "testB_clean" / f"t{i}.png")
        images.append({"id": i + 1, "file_name": f"t{i}.png", "width": w, "height": h})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % len(classes),
                            "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0})
    (root / "annotations").mkdir()
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(classes)]
    (root / "annotations" / "testB.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return root


def tiny_config(module, root: Path, **data):  # type: ignore[no-untyped-def]
    cfg = module.CONFIG()
    cfg.data = dataclasses.replace(cfg.data, root="", target_train=str(root / "trainB"),
                                   source_train=str(root / "trainA"), target_test=str(root / "testB"),
                                   target_test_annotations=str(root / "annotations" / "testB.json"),
                                   target_test_clean=str(root / "testB_clean"), num_fixed_samples=2,
                                   num_worst_samples=1, **data)
    cfg.model = dataclasses.replace(cfg.model, width=4, n_blocks=1, disc_width=4)
    if module is lgcl:
        cfg.lg = dataclasses.replace(cfg.lg, queue_size=16, dim=8, hidden=8)
    cfg.trainer = TrainerConfig(max_steps=2, batch_size=2, eval_split="test", log_every=1, accelerator="cpu")
    return cfg


def batch_of(method, n: int = 2) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    ds = method.train_dataset()
    return collate_pairs([ds[i] for i in range(n)])


@pytest.mark.parametrize("module", [cut, lgcl])
def test_the_generator_loss_sees_the_discriminator_after_its_step(module, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    method = module.build(tiny_config(module, write_domains(tmp_path)))
    nets = method.networks()
    phases = method.training_step(nets, batch_of(method), 0)
    d_phase = next(phases)
    assert list(d_phase.losses) == ["D"]
    with torch.no_grad():  # stand-in for D's optimizer step: D now scores every patch 0
        last = nets["D"].model[-1]
        last.weight.zero_()
        last.bias.zero_()
    g_phase = next(phases)
    assert list(g_phase.losses) == ["G"]
    assert g_phase.logs["loss_G_GAN"] == pytest.approx(1.0)  # mean((0 - 1)^2): the updated D, not the old one
    assert next(phases, None) is None


def test_g_optimizer_holds_translator_heads_and_lg_heads_only(tmp_path: Path) -> None:
    method = lgcl.build(tiny_config(lgcl, write_domains(tmp_path)))
    nets = method.networks()
    opts = method.optimizers(nets)
    held = {id(p) for group in opts["G"].param_groups for p in group["params"]}
    for name in ("G", "F", "lg_heads"):
        assert all(id(p) in held for p in nets[name].parameters()), name
    assert not any(id(p) in held for p in nets["D"].parameters())
    assert not any(p.requires_grad for p in nets["lg_momentum"].parameters())
    assert not list(nets["lg_queues"].parameters())  # queues are buffers: checkpointed, never optimised


def test_lgcl_step_updates_momentum_branch_and_queues(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(lgcl, write_domains(tmp_path))
    cfg.lg = dataclasses.replace(cfg.lg, momentum=0.5)
    method = lgcl.build(cfg)
    nets = method.networks()
    opts = method.optimizers(nets)
    before = {k: v.clone() for k, v in nets["lg_momentum"].state_dict().items()}
    queue0 = nets["lg_queues"][0].entries.clone()
    for out in method.training_step(nets, batch_of(method), 0):
        for name, loss in out.losses.items():
            loss.backward()
            opts[name].step()
            opts[name].zero_grad()
    assert out.logs["loss_LG"] > 0
    method.after_optimizer_step(nets, 0)
    g_enc = dict(nets["G"].encoder.named_parameters())
    m_enc = dict(nets["lg_momentum"]["encoder"].named_parameters())
    for name, p in m_enc.items():  # theta_m = 0.5 theta_m(old) + 0.5 theta
        expected = 0.5 * before[f"encoder.{name}"] + 0.5 * g_enc[name].detach()
        torch.testing.assert_close(p, expected)
    assert int(nets["lg_queues"][0].ptr) == 2  # one global key per image
    assert not torch.equal(nets["lg_queues"][0].entries[:2], queue0[:2])
    torch.testing.assert_close(nets["lg_queues"][0].entries[2:], queue0[2:])


def test_lg_weight_zero_is_the_attention_translator_without_l_ga(tmp_path: Path) -> None:
    cfg = tiny_config(lgcl, write_domains(tmp_path))
    cfg.lg = dataclasses.replace(cfg.lg, weight=0.0)
    method = lgcl.build(cfg)
    nets = method.networks()
    phases = list(method.training_step(nets, batch_of(method), 0))
    assert "loss_LG" not in phases[-1].logs
    queue = nets["lg_queues"][0].entries.clone()
    method.after_optimizer_step(nets, 0)
    assert torch.equal(queue, nets["lg_queues"][0].entries)


@pytest.mark.parametrize("module", [cut, lgcl])
def test_two_step_fit_scores_image_quality_against_the_clean_twins(module, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    method = module.build(tiny_config(module, write_domains(tmp_path / "d")))
    result = fit(method, run_dir=tmp_path / "run", progress=False)
    metrics = result.metrics if hasattr(result, "metrics") else result
    for key in ("PSNR", "SSIM", "PSNR_input", "SSIM_input"):
        assert np.isfinite(metrics[key]), key
    assert -1 <= metrics["SSIM"] <= 1
    out = tmp_path / "run" / "eval" / "test"
    assert (out / "per_image.csv").is_file() and (out / "metrics_by_input.csv").is_file()
    samples = sorted((out / "samples").glob("*.npz"))
    assert [p.name for p in samples][:2] == ["t0.npz", "t1.npz"]
    with np.load(samples[0]) as s:
        assert str(s["kind"]) == "translation" and s["translated"].shape == s["clean"].shape == (H, W, 3)


def test_translate_any_size_pads_to_the_stride_and_crops_back() -> None:
    seen = []

    def net(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape[-2:]))
        return x * 2

    x = torch.rand(1, 3, 33, 46)
    out = translate_any_size(net, x)
    assert seen == [(36, 48)] and out.shape == x.shape
    torch.testing.assert_close(out, x * 2)


def test_mismatched_sizes_without_crop_are_one_line_errors(tmp_path: Path) -> None:
    root = write_domains(tmp_path)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "trainB" / "b0.png")  # one taller target image
    method = cut.build(tiny_config(cut, root))
    ds = method.train_dataset()
    with pytest.raises(DataError, match=r"different sizes in one batch.*data\.crop"):
        collate_pairs([ds[i] for i in range(2)])
    odd = cut.build(tiny_config(cut, write_domains(tmp_path / "odd", size=(30, 44))))
    with pytest.raises(DataError, match=r"divisible by 4.*data\.crop"):
        batch_of(odd)


def test_a_crop_makes_mixed_sizes_train(tmp_path: Path) -> None:
    root = write_domains(tmp_path)
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(root / "trainB" / "b0.png")
    method = cut.build(tiny_config(cut, root, crop=24))
    assert batch_of(method)["x"].shape == (2, 3, 24, 24)


def test_empty_domain_folder_is_a_one_line_error(tmp_path: Path) -> None:
    root = write_domains(tmp_path)
    for p in (root / "trainA").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="trainA"):
        cut.build(tiny_config(cut, root)).train_dataset()


def test_grayscale_and_rgba_images_are_converted(tmp_path: Path) -> None:
    root = write_domains(tmp_path)
    Image.fromarray(np.full((H, W), 7, np.uint8), mode="L").save(root / "trainB" / "b0.png")
    Image.fromarray(np.full((H, W, 4), 9, np.uint8), mode="RGBA").save(root / "trainA" / "a0.png")
    method = cut.build(tiny_config(cut, root))
    ds = method.train_dataset()
    item = ds[0]
    assert item["a"].shape == (3, H, W)
    batch = collate_pairs([ds[i] for i in range(2)])
    assert batch["x"].shape == batch["y"].shape == (2, 3, H, W)


def test_predict_batch_translates_at_each_images_own_size(tmp_path: Path) -> None:
    method = lgcl.build(tiny_config(lgcl, write_domains(tmp_path)))
    images = [torch.randint(0, 256, (3, 30, 41), dtype=torch.uint8), torch.randint(0, 256, (3, 16, 16),
                                                                                      dtype=torch.uint8)]
    with torch.no_grad():
        out = method.predict_batch(method.networks(), images)
    assert [tuple(o.image.shape) for o in out] == [(3, 30, 41), (3, 16, 16)]
    assert all(o.image.dtype == torch.uint8 for o in out)
