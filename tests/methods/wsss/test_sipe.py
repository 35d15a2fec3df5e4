"""SIPE method: one training step, bad input, evaluation outputs, the engine round trip and the configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lowlabel.errors import DataError
from lowlabel.methods.base import TrainerConfig
from lowlabel.methods.wsss import common, inference, sipe
from lowlabel.models.seg_nets import CAMOutput

from .voc_fake import write_fake_voc

torch.set_num_threads(1)


def small_config(root: Path, **sipe_kw: object) -> sipe.SIPEConfig:
    return sipe.SIPEConfig(
        data=common.DataConfig(root=str(root), train_split="train", crop=32, long_side=(32, 48)),
        model=common.ModelConfig(backbone="resnet_small", frozen_bn=False, freeze_stem=False, detach_stage=0,
                               side_channels=(8, 8, 16, 16)),
        sipe=sipe.SIPEParams(**sipe_kw),  # type: ignore[arg-type]
        infer=common.InferConfig(scales=(1.0, 0.5), num_fixed_samples=2, num_worst_samples=1),
        trainer=TrainerConfig(max_steps=2, batch_size=2, eval_split="train", log_every=1),
    )


def two_image_batch(method: sipe.SIPE) -> dict[str, torch.Tensor]:
    ds = method.train_dataset()
    return torch.utils.data.default_collate([ds[0], ds[1]])


def test_training_step_gives_finite_losses_and_gradients_everywhere(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = sipe.build(small_config(write_fake_voc(tmp_path / "voc")))
    batch = two_image_batch(method)
    assert batch["image"].shape == (2, 3, 32, 32) and batch["valid"].shape == (2, 32, 32)
    out = method.training_step(method.networks(), batch, 0)
    loss = out.losses["model"]
    assert torch.isfinite(loss) and {"loss_cls", "loss_gsc"} <= set(out.logs)
    loss.backward()
    missing = [n for n, p in method.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # with detach_stage=0 every trainable parameter, side convs included, gets a gradient


def test_without_gsc_the_side_convs_get_no_gradient(tmp_path: Path) -> None:
    method = sipe.build(small_config(write_fake_voc(tmp_path / "voc"), use_gsc=False))
    out = method.training_step(method.networks(), two_image_batch(method), 0)
    assert "loss_gsc" not in out.logs
    out.losses["model"].backward()
    assert method.model.sides is not None and all(p.grad is None for p in method.model.sides.parameters())


def test_official_detach_blocks_the_early_stages(tmp_path: Path) -> None:
    cfg = small_config(write_fake_voc(tmp_path / "voc"))
    cfg.model.detach_stage = 2
    method = sipe.build(cfg)
    method.training_step(method.networks(), two_image_batch(method), 0).losses["model"].backward()
    body = method.model.backbone.body
    assert all(p.grad is None for i in (0, 1, 2) for p in body[i].parameters())
    assert all(p.grad is not None for p in body[3].parameters())
    # the detached stages are frozen, so no optimizer holds parameters that never get a gradient
    optimised = {id(p) for g in method.optimizers(method.networks())["model"].param_groups for p in g["params"]}
    assert not any(id(p) in optimised for i in (0, 1, 2) for p in body[i].parameters())
    assert all(id(p) in optimised for p in body[3].parameters())


def test_two_group_optimizer_uses_lr_mult_and_the_momentum_quirk(tmp_path: Path) -> None:
    method = sipe.build(small_config(write_fake_voc(tmp_path / "voc")))
    opt = method.optimizers(method.networks())["model"]
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.1, 1.0])  # paper defaults: lr 0.1, new layers x10
    assert all(g["momentum"] == pytest.approx(1e-4) for g in opt.param_groups)  # IRN's effective momentum
    new = {id(p) for p in method.model.new_parameters()}
    fast = next(g for g in opt.param_groups if g["lr"] == pytest.approx(1.0))
    assert {id(p) for p in fast["params"]} == new


def test_image_without_positive_label_is_a_clear_error(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc", empty_id="2007_train001")
    method = sipe.build(small_config(root))
    with pytest.raises(DataError, match="2007_train001.*no positive image-level label"):
        method.train_dataset()[1]


def test_label_file_not_matching_the_image_list_is_a_clear_error(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc")
    table = root / "cls_labels.txt"
    table.write_text("2007_train000 aeroplane\n2007_train001 bicycle\n")  # train has 4 ids
    cfg = small_config(root)
    cfg.data.label_list = str(table)
    with pytest.raises(DataError, match=r"cls_labels.txt does not match the image list .*train.txt: 2 of 4"):
        sipe.build(cfg)


def test_seeds_are_argmax_over_background_and_present_classes() -> None:
    scores = torch.tensor([[0.2, 0.2], [0.9, 0.1], [0.5, 0.9]]).view(3, 1, 2)  # bg, class 1, class 2
    labels = torch.tensor([0.0, 1.0])  # only class 2 present: class 1's 0.9 must not win
    assert inference.present_argmax(scores, labels).tolist() == [[2, 2]]


def test_affinity_refine_spreads_scores_inside_a_feature_cluster() -> None:
    feats = torch.zeros(2, 1, 4)
    feats[0, :, :2] = 1.0  # left two pixels one cluster, right two the other
    feats[1, :, 2:] = 1.0
    scores = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]).view(2, 1, 4)
    out = inference.affinity_refine(scores, feats, beta=1.0, log2_steps=2)
    torch.testing.assert_close(out[1, 0], torch.tensor([0.5, 0.5, 0.0, 0.0]))  # class mass averaged over its cluster
    torch.testing.assert_close(out[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_predict_writes_seeds_pseudo_masks_and_overlays(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc", num_train=2, num_val=1, num_aug=0)
    method = sipe.build(small_config(root))
    out = tmp_path / "pred"
    method.predict(method.networks(), root / "JPEGImages" / "2007_train000.jpg", out)
    seed = np.array(__import__("PIL.Image", fromlist=["Image"]).open(out / "seeds" / "2007_train000.png"))
    assert seed.shape == (40, 48) and seed.dtype == np.uint8
    assert (out / "pseudo" / "2007_train000.png").is_file()
    assert (out / "overlays" / "2007_train000_seed.png").is_file()


def run_cli(*argv: str) -> None:
    from lowlabel.cli.main import main

    assert main(list(argv)) == 0


def test_train_evaluate_predict_through_the_engine_and_cli(tmp_path: Path) -> None:
    from lowlabel.engine.config import dump_yaml
    from lowlabel.samples import load_sample, read_per_image

    root = write_fake_voc(tmp_path / "voc", num_train=3, num_val=2, num_aug=0)
    cfg = small_config(root)
    cfg.trainer.accelerator = "cpu"
    (tmp_path / "cfg.yaml").write_text(dump_yaml(cfg))
    run = tmp_path / "run"
    run_cli("train", "sipe", "--config", str(tmp_path / "cfg.yaml"), "--run-dir", str(run), "--no-progress")
    assert (run / "checkpoints" / "last.ckpt").is_file()
    run_cli("evaluate", "sipe", "--ckpt", str(run), "--split", "val")
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert {"mIoU", "pseudo_mIoU", "CorLoc"} <= set(metrics) and metrics["split"] == "val"
    assert 0.0 <= metrics["mIoU"] <= 100.0
    folder = run / "eval" / "val"
    assert set(read_per_image(folder / "per_image.csv")) == {"2007_val000", "2007_val001"}
    seed = np.array(__import__("PIL.Image", fromlist=["Image"]).open(folder / "seeds" / "2007_val000.png"))
    assert seed.shape == (40, 48) and (folder / "pseudo" / "2007_val001.png").is_file()
    sample = load_sample(next((folder / "samples").glob("*.npz")))
    assert sample["kind"] == "segmentation" and sample["seed"].shape == sample["gt"].shape == (40, 48)
    assert list(sample["class_names"][:2]) == ["background", "aeroplane"]
    run_cli("predict", "sipe", "--ckpt", str(run), "--input", str(root / "JPEGImages"), "--out", str(tmp_path / "p"))
    assert len(list((tmp_path / "p" / "overlays").glob("*_pseudo.png"))) == 5


@pytest.mark.parametrize("name", ["synth-quick", "synth-full", "voc12", "coco14"])
def test_real_config_runs_on_a_fake_dataset_in_its_layout(name: str, tmp_path: Path) -> None:
    from .wsss_configs import CONFIGS, check_config

    check_config(sipe, CONFIGS / "sipe" / f"{name}.yaml", tmp_path)


def test_crf_refinement_is_optional_and_named_when_missing() -> None:
    import importlib.util

    if importlib.util.find_spec("pydensecrf") is not None:
        pytest.skip("pydensecrf is installed")
    with pytest.raises(ValueError, match="pydensecrf"):
        common.InferConfig(refine="crf")


def test_resnet_small_width_is_configurable() -> None:
    cfg = common.ModelConfig(backbone="resnet_small", width=8, frozen_bn=False, freeze_stem=False, detach_stage=0)
    assert common.build_cam_net(cfg, 3, side_features=False).backbone.num_features == 64  # 8 * width


class _FixedOutput(torch.nn.Module):
    """A 'network' whose output is fixed: two feature clusters (pixels 0-1 and 2-3 of a 1 x 4 map), class 1's
    CAM on the first and class 2's on the second, the other classes' CAMs 0."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> CAMOutput:
        feats = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).view(1, 2, 1, 4)
        cam = torch.zeros(1, self.num_classes, 1, 4)
        cam[:, :2] = 4.0 * feats  # raw CAM of classes 1 and 2 (normalised to 0/1)
        return CAMOutput(cam=cam, x4=feats, hier=feats)


@pytest.mark.parametrize("seed_classes", ["labels", "all"])
def test_seed_classes_decides_whether_absent_classes_compete_for_seeds(tmp_path: Path, seed_classes: str) -> None:
    """Only class 1 is present. With ``labels`` the absent class's map is zeroed before seeding, so its pixels
    (2, 3) are seeded background and IS-CAM's background channel covers them. With ``all`` (official make_cam)
    class 2 wins them; the background prototype has no seed pixel, so every kept channel is 0 there."""
    method = sipe.build(small_config(write_fake_voc(tmp_path / "voc"), seed_classes=seed_classes))
    method.config.infer.scales, method.config.infer.flip = (1.0,), False
    labels = torch.zeros(method.num_classes)
    labels[0] = 1.0  # class 1 (index 1 of the K1 maps) present, class 2 absent
    scores, _ = method.score_maps(_FixedOutput(method.num_classes), torch.zeros(3, 1, 4), labels)
    expected_bg = [0.0, 0.0, 1.0, 1.0] if seed_classes == "labels" else [0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(scores[0, 0], torch.tensor(expected_bg), atol=1e-4, rtol=0)
    torch.testing.assert_close(scores[1, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    assert float(scores[2:].abs().max()) == 0.0  # absent classes never kept


def test_seed_classes_other_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="sipe.seed_classes must be labels or all"):
        sipe.SIPEParams(seed_classes="present")
