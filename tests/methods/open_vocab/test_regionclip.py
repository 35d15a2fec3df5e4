"""The ``regionclip`` method on the tiny fake COCO with a small random CLIP teacher written by the test: the untrained
student distils at KL 0, two steps move the
student's trainable image tower and nothing else, the concept pool from captions, the img2dataset reader, evaluation
(student and teacher rows) and one-line errors. (One engine step through each real config, proposals included:
tests/methods/test_contract.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlabel.errors import DataError, UserError
from lowlabel.losses.regionclip import extract_concepts
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.open_vocab import proposals as proposals_module
from lowlabel.methods.open_vocab import regionclip as rc
from lowlabel.methods.open_vocab.proposals import Proposals
from lowlabel.models.clip import build_clip
from lowlabel.models.weights import CHECKPOINT_FORMAT
from tests.methods.open_vocab.coco_fake import write_coco
from tests.models.test_clip import small_arch


def write_clip_run(folder: Path, arch: str, *, image_size: int = 64, seed: int = 0) -> Path:
    """A `clip` run folder (engine checkpoint format) holding a random CLIP of ``arch``."""
    torch.manual_seed(seed)
    model = build_clip(arch=arch, image_size=image_size)
    (folder / "checkpoints").mkdir(parents=True)
    config = {"model": {"arch": arch, "image_size": image_size, "context_length": 0, "pretrained": ""}}
    torch.save({"format": CHECKPOINT_FORMAT, "method": "clip", "config": config, "nets": {"model": model.state_dict()}},
               folder / "checkpoints" / "last.ckpt")
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("regionclip")
    arch = small_arch(tmp / "small.json")  # embed 32, input 64: attention pool on 2 x 2, RoIs of 4 x 4
    return {"coco": write_coco(tmp / "coco"), "arch": Path(arch), "teacher": write_clip_run(tmp / "clip-run", arch),
            "tmp": tmp}


def config(files: dict[str, Path], **changes: object) -> rc.RegionCLIPConfig:
    cfg = rc.RegionCLIPConfig(
        init_from=str(files["teacher"]),
        data=rc.RegionCLIPDataConfig(root=str(files["coco"]), regions="gt", flip=False),
        concepts=rc.ConceptConfig(templates=["a {} box.", "a photo of a {}."]),
        eval=rc.RegionEvalConfig(templates=["a {} box."]),
        optim=OptimConfig(name="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, grad_clip=5.0),
        trainer=TrainerConfig(max_steps=2, batch_size=4, accelerator="cpu"))
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def batch_of(method: rc.RegionCLIPMethod) -> dict:
    data = method.train_dataset()
    return rc.collate_pairs([data[i] for i in range(len(data))])


def test_the_student_starts_at_the_teacher_and_only_its_image_tower_trains(files: dict[str, Path],
                                                                          one_thread: None) -> None:
    torch.manual_seed(0)
    method = rc.build(config(files))
    nets = {**method.networks(), **{k: f.module for k, f in method.frozen_networks().items()}}
    assert set(nets) == {"model", "teacher"}  # regions: gt needs no proposal network
    student, teacher = method.model, method.teacher
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert all(torch.equal(v, teacher_before[k]) for k, v in before.items())
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("visual.layer2", "visual.layer3", "visual.layer4", "visual.attnpool"))
                             for n in trainable)
    assert not any(".bn" in n or "downsample.1" in n for n in trainable)  # BatchNorm frozen (FrozenBN)
    opt = method.optimizers(nets)["model"]
    batch = batch_of(method)
    logs = []
    for step in range(2):
        out = next(method.training_step(nets, batch, step))
        opt.zero_grad()
        out.losses["model"].backward()
        opt.step()
        logs.append(out.logs)
    # student == teacher: the teacher's distribution is the student's, KL 0 on the kept regions
    assert logs[0]["loss_dist"] == pytest.approx(0.0, abs=1e-5) and logs[0]["kept"] > 0
    assert logs[0]["regions_per_image"] == 1.0  # the 4 base boxes of the 4 train images (novel ones hidden)
    after = student.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.layer") or k.startswith("visual.attnpool") for k in changed)
    assert not any("running" in k or k.startswith(("visual.conv", "visual.layer1")) for k in changed)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert logs[1]["loss_dist"] > 0  # the student moved away from the teacher


@pytest.mark.parametrize("cache", [True, False])
def test_proposals_are_computed_once_per_image_and_letterboxed(cache: bool, files: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(files)
    cfg.data = rc.RegionCLIPDataConfig(root=str(files["coco"]), regions="proposals", flip=False, cache_proposals=cache)
    method = rc.build(cfg)
    calls = []

    def propose(detector: object, images: list[torch.Tensor], _cfg: object) -> list[Proposals]:
        calls.append([tuple(im.shape) for im in images])  # the uint8 originals
        return [Proposals(torch.tensor([[0.0, 0.0, 12.0, 10.0], [24.0, 20.0, 48.0, 40.0]]), torch.tensor([0.9, 0.5]))
                for _ in images]

    monkeypatch.setattr(proposals_module, "propose", propose)  # what cached_proposals calls
    batch = batch_of(method)
    nets = {"proposer": torch.nn.Identity()}
    first, again = method.regions(nets, batch), method.regions(nets, batch)
    assert calls == [[(3, 40, 48)] * 4] * (1 if cache else 2)
    # 40 x 48 images letterboxed to 64: x * 4/3, y * 53/40 + 5
    expected = torch.tensor([[0.0, 5.0, 16.0, 5 + 10 * 53 / 40], [32.0, 5 + 20 * 53 / 40, 64.0, 58.0]])
    assert all(torch.allclose(b, expected) for b in first + again)
    batch["flip"] = [True] * 4
    mirrored = torch.stack([64 - expected[:, 2], expected[:, 1], 64 - expected[:, 0], expected[:, 3]], dim=1)
    assert all(torch.allclose(b, mirrored) for b in method.regions(nets, batch))


def test_concept_pool_from_captions(files: dict[str, Path], tmp_path: Path) -> None:
    method = rc.build(config(files))
    assert method.concepts == ["red", "green", "blue"]  # categories vocabulary: blue is novel, captions name it
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"crimson": ["red"], "yellow": [], "azure": "blue"}))
    cfg = config(files)
    cfg.concepts = rc.ConceptConfig(vocabulary=str(vocab), templates=["a {}."])
    method = rc.build(cfg)
    assert method.concepts == ["crimson", "azure"] and method.concept_counts["azure"] == 4  # 2 images x 2 captions
    cfg.concepts = rc.ConceptConfig(vocabulary=str(vocab), templates=["a {}."], from_captions=False)
    assert rc.build(cfg).concepts == ["crimson", "yellow", "azure"]
    words = rc.shapesworld_vocabulary()
    assert len(words) == 20 and words["dining table"] == ["table"]
    assert extract_concepts(["A puppy next to a dining table and two tables."], words) == [["dog", "dining table"]]


def test_concept_embeddings_file_rows_follow_the_pool(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "nouns.txt").write_text("yellow\nred\nblue\n")
    emb = torch.randn(3, 32)
    torch.save(emb, tmp_path / "nouns_emb.pth")
    cfg = config(files)
    cfg.concepts = rc.ConceptConfig(vocabulary=str(tmp_path / "nouns.txt"), embeddings=str(tmp_path / "nouns_emb.pth"))
    method = rc.build(cfg)
    assert method.concepts == ["red", "blue"]
    got = method.concept_embeddings(method.teacher)
    assert torch.allclose(got, torch.nn.functional.normalize(emb[[1, 2]], dim=-1))


def test_evaluation_scores_student_and_teacher(files: dict[str, Path], tmp_path: Path, one_thread: None) -> None:
    method = rc.build(config(files))
    nets = {"model": method.model.eval(), "teacher": method.teacher}
    result = method.evaluate(nets, "val", tmp_path / "eval")
    m = result.metrics
    assert result.monitor == "region_acc" and m["region_acc"] == m["teacher_region_acc"]  # untrained: the same
    assert {"region_acc_base", "region_acc_novel", "teacher_region_acc_novel", "image_mAP"} <= set(m)
    rows = (tmp_path / "eval" / "per_image.csv").read_text().split()
    assert rows[0] == "image_id,score" and len(rows) == 4  # 3 val images
    preds = method.predict_batch(nets, [torch.zeros(3, 40, 30, dtype=torch.uint8)])
    assert len(preds) == 1 and preds[0].probs.shape == (3,)


def test_predict_writes_what_predict_batch_returns(files: dict[str, Path], tmp_path: Path, one_thread: None) -> None:
    method = rc.build(config(files))
    nets = {"model": method.model.eval(), "teacher": method.teacher}
    method.predict(nets, files["coco"] / "val2017", tmp_path / "pred")
    rows = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    images = sorted((files["coco"] / "val2017").glob("*.png"))
    assert [Path(r["image"]).name for r in rows] == [f.name for f in images]
    with torch.no_grad():
        preds = method.predict_batch(nets, [torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1)
                                            for f in images])
    for row, pred in zip(rows, preds):
        assert row["name"] == ["red", "green", "blue"][pred.label] and row["score"] == pytest.approx(pred.score)


def test_a_split_file_outside_the_data_root(files: dict[str, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "split.json").write_text(json.dumps({"base": [1, 4], "novel": [2]}))
    monkeypatch.chdir(tmp_path)
    cfg = config(files)
    cfg.data = rc.RegionCLIPDataConfig(root=str(files["coco"]), regions="gt", ovd_split="split.json")
    assert rc.build(cfg).categories.novel.tolist() == [False, True, False]  # green, by the file in the working dir


def test_img2dataset_reader(tmp_path: Path) -> None:
    shard = tmp_path / "cc3m" / "00000"
    shard.mkdir(parents=True)
    for key, text in (("000000000", "a red box"), ("000000001", "a dog on grass")):
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(shard / f"{key}.jpg")
        (shard / f"{key}.txt").write_text(text + "\n")
        (shard / f"{key}.json").write_text("{}")
    data = rc.Img2DatasetCaptions(tmp_path / "cc3m")
    assert len(data) == 2 and data.captions == {0: ["a red box"], 1: ["a dog on grass"]}
    assert data[1]["image"].shape == (3, 20, 30) and data[1]["image"].dtype == torch.uint8
    (shard / "000000001.txt").unlink()
    with pytest.raises(DataError, match=r"000000001.jpg: no caption file 000000001.txt"):
        rc.Img2DatasetCaptions(tmp_path / "cc3m")


@pytest.mark.parametrize("case", ["no_concept", "no_teacher", "missing_teacher", "teacher_width", "concept_width",
                                  "no_proposals"])
def test_bad_input_is_one_line(case: str, files: dict[str, Path], tmp_path: Path) -> None:
    cfg = config(files)
    if case == "no_concept":
        (tmp_path / "v.txt").write_text("zebra\n")
        cfg.concepts = rc.ConceptConfig(vocabulary=str(tmp_path / "v.txt"))
        expected = "captions_train.json: none of its 8 captions names a concept of the vocabulary"
    elif case == "no_teacher":
        cfg.init_from = ""
        expected = "init_from is empty; name the CLIP teacher, a clip run folder (train one with `lowlabel train clip"
    elif case == "missing_teacher":
        cfg.init_from = str(tmp_path / "nowhere")
        expected = "nowhere does not exist (train one with `lowlabel train clip"
    elif case == "teacher_width":
        wide = build_clip(arch=small_arch(tmp_path / "wide.json", embed_dim=48))
        torch.save(wide.state_dict(), tmp_path / "wide.pt")
        cfg.init_from, cfg.model = str(tmp_path / "wide.pt"), rc.RegionCLIPModelConfig(arch=str(files["arch"]))
        expected = "wide.pt: embedding width 48 does not match the model's 32"
    elif case == "concept_width":
        (tmp_path / "v.txt").write_text("red\n")
        torch.save(torch.randn(1, 48), tmp_path / "v_emb.pth")
        cfg.concepts = rc.ConceptConfig(vocabulary=str(tmp_path / "v.txt"), embeddings=str(tmp_path / "v_emb.pth"))
        expected = "v_emb.pth: embedding width 48 does not match the teacher's 32"
    else:
        cfg.data = rc.RegionCLIPDataConfig(root=str(files["coco"]), regions="proposals")
        expected = "proposals.source: empty; name a class-agnostic detector run"
    with pytest.raises(UserError) as err:
        rc.build(cfg).frozen_networks()
    assert expected in str(err.value) and "\n" not in str(err.value)
