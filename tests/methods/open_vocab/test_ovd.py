"""The ``ovd`` stage on the tiny fake COCO with a small random CLIP and a random class-agnostic RPN written by the
test: two training steps keep the background logit at exactly 0 and the text embeddings and text tower unchanged
while the image tower and box regressor move; the novel-only switch; zero-shot inference (GT boxes by RoI features
and crops, proposals without box deltas); predict with any class list; one-line errors. (The hand-made all-class
against novel-only case: test_detection.py; one engine step through each real config: tests/methods/test_contract.py.)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlabel.errors import DataError, UserError
from lowlabel.losses.regionclip import ovd_logits
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.open_vocab import ovd
from lowlabel.methods.open_vocab import proposals as proposals_module
from lowlabel.methods.open_vocab.proposals import propose
from tests.methods.open_vocab.coco_fake import write_coco
from tests.methods.open_vocab.ovd_fake import write_rpn_run
from tests.methods.open_vocab.test_regionclip import write_clip_run
from tests.models.test_clip import small_arch


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ovd")
    coco = write_coco(tmp / "coco")
    arch = small_arch(tmp / "small.json")  # embed 32, input 64: attention pool on 2 x 2, RoIs of 4 x 4
    return {"coco": coco, "clip": write_clip_run(tmp / "clip-run", arch), "rpn": write_rpn_run(tmp / "rpn-run", coco),
            "tmp": tmp}


def config(files: dict[str, Path], **changes: object) -> ovd.OVDConfig:
    cfg = ovd.OVDConfig(
        init_from=str(files["clip"]), data=ovd.OVDDataConfig(root=str(files["coco"]), flip=False),
        proposals=ovd.ProposalConfig(source=str(files["rpn"]), post_nms_top_n=20, nms_thresh=0.7),
        text=ovd.TextConfig(templates=["a {} box.", "a photo of a {}."]),
        roi=ovd.OVDRoIConfig(batch_size_per_image=16, score_thresh=0.0),
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.0, weight_decay=0.0),
        trainer=TrainerConfig(max_steps=2, batch_size=4, accelerator="cpu", monitor="AP50_novel"))
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def nets_of(method: ovd.OVDMethod) -> dict[str, torch.nn.Module]:
    return {**method.networks(), **{k: f.module for k, f in method.frozen_networks().items()}}


def train_step(method: ovd.OVDMethod, nets: dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
               step: int = 0) -> tuple[dict, object]:
    """One optimizer step on the first three train images: (the batch, the step's output)."""
    batch = ovd.collate_train([method.train_dataset()[i] for i in range(3)])
    out = next(iter(method.training_step(nets, batch, step)))
    opt.zero_grad()
    out.losses["model"].backward()
    opt.step()
    return batch, out


def test_training_keeps_the_background_logit_zero_and_the_text_frozen(files: dict[str, Path],
                                                                      one_thread: None) -> None:
    torch.manual_seed(0)
    method = ovd.build(config(files))
    net, nets = method.model, nets_of(method)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = method.optimizers(nets)["model"]
    data = method.train_dataset()
    assert len(data) == 3  # the 4th train image has only a novel (blue) box, hidden in train: no base box, left out
    batch = ovd.collate_train([data[i] for i in range(len(data))])
    for step in range(2):
        out = next(iter(method.training_step(nets, batch, step)))
        opt.zero_grad()
        out.losses["model"].backward()
        opt.step()
        assert out.logs["background_logit"] == 0.0 and out.logs["fg_share"] > 0
        assert 0.0 <= out.logs["roi_acc_fg"] <= 100.0 and out.logs["roi_feat_norm"] > 0  # the diagnostics
        assert 0.0 <= out.logs["novel_win_share"] <= 100.0
    after = net.state_dict()
    assert torch.equal(after["class_emb"], before["class_emb"])  # the classifier's text embeddings
    text_tower = [k for k in before if k.startswith("clip.") and not k.startswith("clip.visual.")]
    assert text_tower and all(torch.equal(after[k], before[k]) for k in text_tower)
    frozen = [k for k in before if k.startswith(("clip.visual.conv1", "clip.visual.layer1"))]  # FREEZE_AT 2
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    # res4's shortcut (a random open_clip tower zeroes each block's last BatchNorm gain, which stays frozen, so the
    # residual branches get zero gradients here), the attention pool and the box regressor train
    for moved in ("clip.visual.layer3.0.downsample.0.weight", "clip.visual.attnpool.c_proj.weight", "bbox_pred.weight"):
        assert not torch.equal(after[moved], before[moved]), moved
    with torch.no_grad():  # after training, any region's background logit is still exactly 0
        feats = net.region_features(batch["image"], [torch.tensor([[0.0, 0.0, 30.0, 30.0]])] * 3, pool_size=4)
        assert torch.equal(ovd_logits(feats, net.class_emb)[:, -1], torch.zeros(3))


def test_head_steps_train_only_the_head_first(files: dict[str, Path], one_thread: None) -> None:
    torch.manual_seed(0)
    method = ovd.build(config(files, model=ovd.OVDModelConfig(learn_background=True, head_steps=1)))
    net, nets = method.model, nets_of(method)
    opt = method.optimizers(nets)["model"]
    batch = ovd.collate_train([method.train_dataset()[i] for i in range(3)])
    pool = "clip.visual.attnpool.c_proj.weight"
    for step, tower_moves in ((0, False), (1, True)):
        before = {k: v.clone() for k, v in net.state_dict().items()}
        out = next(iter(method.training_step(nets, batch, step)))
        opt.zero_grad()
        out.losses["model"].backward()
        opt.step()
        after = net.state_dict()
        assert not torch.equal(after["background"], before["background"])  # the head trains at every step
        assert not torch.equal(after["bbox_pred.weight"], before["bbox_pred.weight"])
        assert torch.equal(after[pool], before[pool]) is not tower_moves  # the tower from step head_steps on


def test_freeze_at_6_trains_the_head_alone(files: dict[str, Path], one_thread: None) -> None:
    torch.manual_seed(0)
    method = ovd.build(config(files, model=ovd.OVDModelConfig(learn_background=True, freeze_at=6)))
    net, nets = method.model, nets_of(method)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained == {"background", "bbox_pred.weight", "bbox_pred.bias"}  # F-VLM's transfer: no tower parameter
    train_step(method, nets, method.optimizers(nets)["model"])
    assert not torch.equal(net.background, torch.zeros_like(net.background))
    with pytest.raises(ValueError, match="0..6"):
        ovd.OVDModelConfig(freeze_at=7)


def test_distillation_starts_at_zero_and_holds_the_init_tower_fixed(files: dict[str, Path],
                                                                    one_thread: None) -> None:
    torch.manual_seed(0)
    method = ovd.build(config(files, loss=ovd.OVDLossConfig(distill_weight=0.5)))
    assert "reference" not in ovd.build(config(files)).frozen_networks()  # the paper's: no second tower
    net, nets = method.model, nets_of(method)
    reference = nets["reference"]
    ref_before = {k: v.clone() for k, v in reference.state_dict().items()}
    opt = method.optimizers(nets)["model"]
    assert not any(p is q for p in opt.param_groups[0]["params"] for q in reference.parameters())
    seen = [train_step(method, nets, opt, step)[1].logs["loss_distill"] for step in range(2)]
    # the untrained tower is the init tower (BatchNorm frozen in both): no distance at step 0, some after a step
    assert seen[0] == pytest.approx(0.0, abs=1e-5) and seen[1] > 1e-4
    assert all(torch.equal(reference.state_dict()[k], v) for k, v in ref_before.items())
    assert not torch.equal(net.clip.visual.attnpool.c_proj.weight, reference.visual.attnpool.c_proj.weight)
    with pytest.raises(ValueError, match="distill_weight"):
        ovd.OVDLossConfig(distill_weight=-1.0)


def test_learn_background_trains_the_background_embedding_and_scores_with_it(files: dict[str, Path],
                                                                            one_thread: None) -> None:
    torch.manual_seed(0)
    method = ovd.build(config(files, model=ovd.OVDModelConfig(learn_background=True)))
    net, nets = method.model, nets_of(method)
    assert torch.equal(net.background, torch.zeros_like(net.background))  # starts as the paper's zero logit
    assert ovd.build(config(files)).model.background is None  # the paper's: no parameter, no checkpoint key
    batch, _ = train_step(method, nets, method.optimizers(nets)["model"])
    assert net.background.abs().sum() > 0  # in the optimizer, moved by the background RoIs
    images = [torch.as_tensor(batch["raw"][0])]
    _, _, feats, probs = method.proposal_scores(nets, images, net.class_emb)
    want = ovd_logits(feats, net.class_emb, temperature=0.01, background=net.background).softmax(1)[:, :-1]
    torch.testing.assert_close(probs, want)  # evaluation uses the trained background, not the zero


def test_novel_only_switch_scores_the_novel_rows(files: dict[str, Path]) -> None:
    method = ovd.build(config(files, eval=ovd.OVDEvalConfig(categories="novel")))
    emb, cols = method.eval_classes(method.model)
    assert method.categories.names == ["red", "green", "blue"] and cols.tolist() == [2]
    assert torch.equal(emb, method.model.class_emb[2:])


def test_evaluation_writes_the_ovd_split_and_per_image(files: dict[str, Path], tmp_path: Path,
                                                       one_thread: None) -> None:
    method = ovd.build(config(files))
    result = method.evaluate(nets_of(method), "val", tmp_path)
    assert {"AP50_novel", "AP50_base", "AP50_all"} <= set(result.metrics) and result.monitor == "AP50_novel"
    assert set(result.per_class["AP50"]) == {"red", "green", "blue"}
    lines = (tmp_path / "per_image.csv").read_text().split()
    assert lines[0] == "image_id,score" and len(lines) == 4
    rows = json.loads((tmp_path / "detections.json").read_text())
    assert rows and {r["category_id"] for r in rows} <= {1, 2, 4}  # COCO category ids, not class indices
    samples = sorted((tmp_path / "samples").glob("*.npz"))
    assert len(samples) == 3  # every val image: 6 fixed ones asked for
    with np.load(samples[0]) as sample:
        assert sample["novel_classes"].tolist() == [False, False, True] and sample["pred_boxes"].shape[1] == 4


@pytest.mark.parametrize("regions", ["roi", "crop"])
def test_zero_shot_on_gt_boxes(regions: str, files: dict[str, Path], tmp_path: Path, one_thread: None) -> None:
    cfg = ovd.zero_shot_config(config(files), init_from=str(files["clip"]), mode="gt")
    cfg.eval = dataclasses.replace(cfg.eval, zero_shot_regions=regions)
    method = ovd.build(cfg)
    assert method.frozen_networks() == {}  # GT boxes: no RPN loaded
    result = method.evaluate(nets_of(method), "val", tmp_path)
    assert {"region_acc", "region_acc_novel", "region_acc_base"} <= set(result.metrics)
    assert result.monitor == "region_acc" and (tmp_path / "per_image.csv").is_file()


def test_zero_shot_detection_keeps_the_proposal_boxes(files: dict[str, Path], one_thread: None) -> None:
    cfg = ovd.zero_shot_config(config(files), init_from=str(files["clip"]), mode="proposals")
    assert (cfg.proposals.nms_thresh, cfg.roi.nms_thresh, cfg.roi.multiply_objectness) == (0.9, 0.5, True)
    method = ovd.build(cfg)
    nets = nets_of(method)
    with torch.no_grad():
        method.model.bbox_pred.bias.fill_(5.0)  # deltas that would move every box: zero-shot must not apply them
    image = method._view("val", train=False)[0]["image"]
    dets = method.predict_batch(nets, [image])[0]
    props = propose(nets["proposer"], [image], cfg.proposals)[0].boxes
    assert len(dets.scores) > 0
    gap = (dets.boxes[:, None, :] - props[None, :, :]).abs().amax(-1).amin(-1)  # (N,) distance to nearest proposal
    assert float(gap.max()) < 1e-3
    assert float(dets.scores.max()) <= float(propose(nets["proposer"], [image], cfg.proposals)[0].scores.max())


def test_predict_with_any_class_list(files: dict[str, Path], tmp_path: Path, one_thread: None) -> None:
    method = ovd.build(config(files))
    method.predict(nets_of(method), files["coco"] / "val2017", tmp_path, classes=["star", " striped ring "])
    rows = json.loads((tmp_path / "detections.json").read_text())
    assert rows and {r["category_name"] for r in rows} <= {"star", "striped ring"}
    assert {r["category_id"] for r in rows} <= {1, 2} and len(list(tmp_path.glob("*.png"))) == 3


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_empty_class_list_is_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    method = ovd.build(config(files))
    with pytest.raises(UserError) as err:
        method.predict(nets_of(method), files["coco"] / "val2017", tmp_path, classes=[" ", ""])
    assert "class list is empty" in _one_line(err)
    with pytest.raises(UserError) as err:  # open vocabulary: any name, but each once and within the text tower
        method.predict(nets_of(method), files["coco"] / "val2017", tmp_path, classes=["star", "Star"])
    assert _one_line(err) == "class 'Star' is listed twice"
    with pytest.raises(UserError) as err:
        method.predict(nets_of(method), files["coco"] / "val2017", tmp_path, classes=["star " * 80])
    assert "tokens, the text tower reads" in _one_line(err)


def test_split_file_naming_a_missing_category_is_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"base": [1, 2], "novel": [4, 99]}))
    cfg = config(files)
    cfg.data = dataclasses.replace(cfg.data, ovd_split=str(split))
    with pytest.raises(DataError) as err:
        ovd.build(cfg)
    assert "99" in _one_line(err) and str(split) in str(err.value)


def test_embedding_width_mismatch_is_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    torch.save(torch.randn(3, 16), tmp_path / "emb.pth")  # the small CLIP embeds in 32 dimensions
    cfg = config(files)
    cfg.text = dataclasses.replace(cfg.text, embeddings=str(tmp_path / "emb.pth"))
    with pytest.raises(UserError) as err:
        ovd.build(cfg)
    assert "embedding width 32 does not match the text embeddings' 16" in _one_line(err)


def test_init_from_another_method_is_one_line(files: dict[str, Path]) -> None:
    with pytest.raises(UserError) as err:
        ovd.build(config(files, init_from=str(files["rpn"])))
    assert "'detector'" in _one_line(err)


def test_lvis_novel_classes_come_from_the_frequency(files: dict[str, Path], tmp_path: Path) -> None:
    from tests.methods.open_vocab.ovd_fake import lvis_categories, write_layout

    cats, novel = lvis_categories()
    root = write_layout(tmp_path / "lvis", images="coco2017", instances="annotations/lvis_v1_{split}.json",
                        categories=cats, novel=novel, lvis=True)
    cfg = config(files)
    cfg.data = ovd.OVDDataConfig(root=str(root), images="coco2017", instances="annotations/lvis_v1_{split}.json",
                                 ovd_split="", novel_frequencies=["r"])
    method = ovd.build(cfg)
    assert method.categories.ids == [1, 2, 5] and method.categories.novel.tolist() == [False, False, True]
    assert method.categories.prompt_names == ["aerosol can", "banana", "bow (weapon)"]
    assert len(method.train_dataset()) == 2  # both train images have a base box (the rare one is hidden)


# --- the command line ----------------------------------------------------------------------------------------------


def _method_config(files: dict[str, Path], path: Path) -> Path:
    path.write_text(json.dumps({
        "data": {"root": str(files["coco"]), "flip": False},
        "proposals": {"source": str(files["rpn"]), "post_nms_top_n": 20},
        "text": {"templates": ["a {} box."]}, "roi": {"batch_size_per_image": 16, "score_thresh": 0.0},
        "trainer": {"max_steps": 1, "batch_size": 4, "accelerator": "cpu"}}))  # JSON is YAML
    return path


def _last_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_cli_evaluate_zero_shot(files: dict[str, Path], tmp_path: Path, one_thread: None,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from lowlabel.cli.main import main

    cfg = _method_config(files, tmp_path / "ovd.yaml")
    out = tmp_path / "zs"
    args = ["evaluate", "ovd", "--ckpt", str(files["clip"]), "--method-config", str(cfg), "--split", "val"]
    assert main([*args, "--zero-shot", "proposals", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "AP50_novel" in metrics and (out / "eval" / "val" / "detections.json").is_file()
    assert main([*args, "--zero-shot", "boxes", "--out", str(out)]) == 2
    assert "--zero-shot must be gt or proposals" in _last_error(capsys)


def test_cli_predict_classes(files: dict[str, Path], tmp_path: Path, one_thread: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from lowlabel.cli.main import main

    cfg = _method_config(files, tmp_path / "ovd.yaml")
    run = tmp_path / "run"
    assert main(["train", "ovd", "--config", str(cfg), "--init_from", str(files["clip"]), "--run-dir", str(run),
                 "--no-progress"]) == 0
    args = ["predict", "ovd", "--ckpt", str(run), "--input", str(files["coco"] / "val2017")]
    assert main([*args, "--out", str(tmp_path / "p"), "--classes", "star, striped ring"]) == 0
    rows = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert {r["category_name"] for r in rows} <= {"star", "striped ring"}
    assert main([*args, "--out", str(tmp_path / "q"), "--classes", " , "]) == 2
    assert "class list is empty" in _last_error(capsys)


@pytest.mark.parametrize("cache", [True, False])
def test_proposals_cached_per_train_image(cache: bool, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                          one_thread: None) -> None:
    calls: list[int] = []
    real = proposals_module.propose

    def counting(detector: torch.nn.Module, images: list, cfg: object) -> list:
        calls.append(len(images))
        return real(detector, images, cfg)

    monkeypatch.setattr(proposals_module, "propose", counting)  # what cached_proposals calls
    cfg = config(files)
    cfg.data = dataclasses.replace(cfg.data, cache_proposals=cache, flip=True)
    method = ovd.build(cfg)
    nets, data = nets_of(method), method.train_dataset()
    for _ in range(2):
        batch = ovd.collate_train([data[i] for i in range(len(data))])
        next(iter(method.training_step(nets, batch, 0)))
    assert calls == ([3] if cache else [3, 3])  # the three training images, once or at every batch
