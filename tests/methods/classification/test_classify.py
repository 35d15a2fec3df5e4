"""classify: top-k counting on hand cases, learning on a tiny ImageNet-layout folder, predict's file, and the run
folder as the backbone every `pretrained` option reads (synth:pretrain resolution, loading, mismatches)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from lowlabel.engine import fit, load_method_from_run
from lowlabel.errors import UserError
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.classification import classify
from lowlabel.models.backbones import build_backbone
from lowlabel.models.seg_nets import SegNet, build_staged_backbone
from lowlabel.models.weights import pretrain_cache_dir, resolve_pretrained

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def write_colours(root: Path, per_class: int = 6) -> Path:
    """Three classes that a tiny network learns in a few steps: noisy images of one colour each."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 2)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(rgb) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def config(root: Path, backbone: str = "resnet_small", steps: int = 25) -> classify.ClassifyConfig:
    return classify.ClassifyConfig(
        data=classify.ClassifyDataConfig(root=str(root), crop=16, min_scale=0.5),
        model=classify.ClassifyModelConfig(backbone=backbone, width=8),
        optim=OptimConfig(name="sgd", lr=0.05, momentum=0.9, schedule="constant", weight_decay=0.0),
        trainer=TrainerConfig(max_steps=steps, batch_size=6, eval_every=0, eval_split="val", log_every=5,
                              accelerator="cpu"),
    )


def train(cfg: classify.ClassifyConfig, run_dir: Path) -> classify.Classify:
    torch.manual_seed(0)
    method = classify.build(cfg)
    fit(method, run_dir=run_dir, progress=False)
    return method


def test_topk_correct_on_a_hand_case() -> None:
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert classify.topk_correct(logits, labels, 1) == 1  # only row 0
    assert classify.topk_correct(logits, labels, 2) == 2  # row 1's label is second
    assert classify.topk_correct(logits, labels, 5) == 3  # k beyond the classes = all


def test_classify_learns_a_tiny_folder_and_predicts(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    root = write_colours(tmp_path / "data")
    method = train(config(root, steps=40), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["top1"] == 100.0 and metrics["top5"] == 100.0  # chance is 33 %
    assert method.classes == ["blue", "green", "red"]
    loaded = load_method_from_run(tmp_path / "run", method_name="classify")
    loaded.method.predict(loaded.nets, root / "val" / "red", tmp_path / "pred")
    rows = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert [r["name"] for r in rows] == ["red", "red"] and rows[0]["top"][0][0] == "red"


def test_synth_pretrain_names_the_command_when_the_cache_is_empty(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOWLABEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError) as err:
        build_backbone(name="resnet_small", width=8, pretrained="synth:pretrain")
    text = str(err.value)
    folder = pretrain_cache_dir("full", 0, "resnet_small", 8)
    assert "\n" not in text
    assert f"lowlabel train classify --data.root synth:full:0 --model.backbone resnet_small --model.width 8 " \
           f"--run-dir {folder}" in text
    (folder / "checkpoints").mkdir(parents=True)  # a run that is still going (or was killed): step 500 of 2000
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (folder / "config.yaml").write_text("trainer:\n  max_steps: 2000\n")
    (folder / "metrics.json").write_text('{"top1": 30.0, "step": 500}')
    with pytest.raises(UserError, match=r"has not finished \(step 500 of 2000\); finish it with: .* --resume auto"):
        resolve_pretrained("synth:pretrain", arch="resnet_small", width=8)
    (folder / "metrics.json").write_text('{"top1": 60.0, "step": 2000}')
    assert resolve_pretrained("synth:pretrain", arch="resnet_small", width=8) == str(folder)
    assert resolve_pretrained("/some/file.pth", arch="resnet50") == "/some/file.pth"  # other values pass
    with pytest.raises(UserError, match="not vgg16"):
        resolve_pretrained("synth:pretrain", arch="vgg16")
    with pytest.raises(UserError, match="seed 'x' is not an integer"):
        resolve_pretrained("synth:pretrain:quick:x", arch="resnet_small", width=8)


def test_the_cached_run_loads_into_every_backbone_that_takes_pretrained(tmp_path: Path, monkeypatch) -> None:
    """resnet_small: WSOL's build_backbone and WSSS's build_staged_backbone (frozen BN keeps the statistics);
    resnet18: the stride-16 ResNet of the WSSS configs and seg's DeepLabV3. Another width or architecture is a
    one-line error naming the run."""
    torch.set_num_threads(1)
    monkeypatch.setenv("LOWLABEL_CACHE", str(tmp_path / "cache"))
    root = write_colours(tmp_path / "data", per_class=2)
    small = train(config(root, steps=2), pretrain_cache_dir("quick", 1, "resnet_small", 8))
    tv18 = train(config(root, backbone="resnet18", steps=1), pretrain_cache_dir("quick", 1, "resnet18"))
    body = {k[len("backbone."):]: v for k, v in small.model.state_dict().items() if k.startswith("backbone.body.")}

    from lowlabel.models.correspondence_nets import frame_encoder  # ContrastCorr's encoders take pretrained too

    corr_small = frame_encoder("resnet_small", width=8, pretrained="synth:pretrain:quick:1").backbone
    wsol = build_backbone(name="resnet_small", width=8, pretrained="synth:pretrain:quick:1")
    wsss = build_staged_backbone("resnet_small", width=8, pretrained="synth:pretrain:quick:1", frozen_bn=True,
                                 freeze_stem=True)
    for net in (wsol, wsss, corr_small):
        state = net.state_dict()
        assert all(torch.equal(state[k], v) for k, v in body.items())
    assert not any(p.requires_grad for p in wsss.body[0].parameters())
    assert type(wsss.body[0][1]).__name__ == "FixedBatchNorm2d"

    ref = {k: v for k, v in tv18.model.state_dict().items() if not k.startswith("fc.")}
    staged = build_staged_backbone("resnet18_os16", pretrained="synth:pretrain:quick:1", frozen_bn=False,
                                   freeze_stem=False)
    seg = SegNet(arch="deeplabv3_small", num_classes=3, pretrained_backbone="synth:pretrain:quick:1")
    corr18 = frame_encoder("resnet18_os8", pretrained="synth:pretrain:quick:1")
    for net in (staged, seg, corr18):
        tensors = list(net.state_dict().values())
        assert all(any(t.shape == v.shape and torch.equal(t, v) for t in tensors) for v in ref.values())

    from lowlabel.pretrained import export_backbone  # the same weights as plain files, for other code

    small_file = export_backbone(pretrain_cache_dir("quick", 1, "resnet_small", 8), tmp_path / "small.safetensors")
    tv_file = export_backbone(pretrain_cache_dir("quick", 1, "resnet18"), tmp_path / "r18.safetensors")
    from_file = build_backbone(name="resnet_small", width=8, pretrained=str(small_file)).state_dict()
    assert all(torch.equal(from_file[k], v) for k, v in body.items())
    torchvision18 = torchvision.models.resnet18(num_classes=3)
    from lowlabel.models.weights import load_torchvision_weights

    load_torchvision_weights(torchvision18, str(tv_file))
    assert all(torch.equal(torchvision18.state_dict()[k], v) for k, v in ref.items())

    with pytest.raises(ValueError, match="do not fit this resnet_small") as err:
        build_backbone(name="resnet_small", width=16, pretrained=str(pretrain_cache_dir("quick", 1, "resnet_small", 8)))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="no backbone.body") as err:
        build_backbone(name="resnet_small", width=8, pretrained=str(pretrain_cache_dir("quick", 1, "resnet18")))
    with pytest.raises(ValueError, match="not a torchvision state dict for this backbone") as err:
        build_staged_backbone("resnet18_os16", pretrained=str(pretrain_cache_dir("quick", 1, "resnet_small", 8)))
    assert "\n" not in str(err.value)


def test_a_resnet50_run_loads_into_the_wsol_wsss_and_seg_resnet50s(tmp_path: Path, monkeypatch) -> None:
    """The paper backbones: wsolevaluation's ResNet50-CAM, IRN/SIPE's stride-16 ResNet-50, DeepLabV3-ResNet50."""
    torch.set_num_threads(1)
    monkeypatch.setenv("LOWLABEL_CACHE", str(tmp_path / "cache"))
    cfg = config(write_colours(tmp_path / "data", per_class=2), backbone="resnet50", steps=1)
    cfg.data.crop = 64  # stride 32: 2 x 2 maps for BatchNorm
    run = train(cfg, pretrain_cache_dir("full", 0, "resnet50"))
    ref = {k: v for k, v in run.model.state_dict().items() if not k.startswith("fc.")}
    nets = [build_backbone(name="resnet50", pretrained="synth:pretrain"),
            build_staged_backbone("resnet50_os16", pretrained="synth:pretrain", frozen_bn=True, freeze_stem=True),
            SegNet(arch="deeplabv3_resnet50", num_classes=3, pretrained_backbone="synth:pretrain")]
    for net in nets:
        tensors = list(net.state_dict().values())
        assert all(any(t.shape == v.shape and torch.equal(t, v) for t in tensors) for v in ref.values())
