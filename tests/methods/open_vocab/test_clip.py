"""The ``clip`` method: training steps lower the loss on a fixed batch, the weight-decay groups, a published CLIP's
TorchScript file evaluated through ``lowlabel evaluate``'s path for foreign weights, and one-line errors for bad
input. (One engine step, evaluation and predict_batch of every config: tests/methods/test_contract.py.)"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from lowlabel.data.io import load_rgb
from lowlabel.engine import load_method_from_run
from lowlabel.errors import UserError
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.open_vocab import clip
from lowlabel.models.clip import build_clip
from tests.methods.open_vocab.coco_fake import write_coco
from tests.models.test_clip import OpenAILayout, small_arch


def config(root: Path, arch: str, **data: object) -> clip.CLIPConfig:
    return clip.CLIPConfig(
        data=clip.CLIPDataConfig(root=str(root), flip=False, **data),  # type: ignore[arg-type]
        model=clip.CLIPModelConfig(arch=arch),
        eval=clip.ZeroShotConfig(templates=["a {} box.", "a photo of a {} box."]),
        optim=OptimConfig(name="adamw", lr=2e-3, betas=(0.9, 0.98), weight_decay=0.2, schedule="constant"),
        trainer=TrainerConfig(max_steps=1, batch_size=4, accelerator="cpu"))


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return write_coco(tmp_path / "coco")


def test_training_steps_lower_the_loss_on_a_fixed_batch(coco: Path, tmp_path: Path, one_thread: None) -> None:
    torch.manual_seed(0)
    method = clip.build(config(coco, small_arch(tmp_path / "small.json")))
    data = method.train_dataset()
    batch = {k: torch.stack([data[i][k] for i in range(len(data))]) for k in ("image", "tokens")}  # 4 pairs
    nets = method.networks()
    opt = method.optimizers(nets)["model"]
    losses = []
    for step in range(12):
        out = method.training_step(nets, batch, step)
        opt.zero_grad()
        out.losses["model"].backward()
        opt.step()
        losses.append(float(out.losses["model"].detach()))
    assert losses[-1] < 0.5 * losses[0] and out.logs["pair_acc"] == 100.0


def test_weight_decay_spares_gains_biases_positions_and_the_scale(coco: Path, tmp_path: Path) -> None:
    method = clip.build(config(coco, small_arch(tmp_path / "small.json")))
    decay, plain = method.optimizers(method.networks())["model"].param_groups
    names = {id(p): n for n, p in method.model.named_parameters()}
    spared = {names[id(p)] for p in plain["params"]}
    assert plain["weight_decay"] == 0.0 and decay["weight_decay"] == 0.2
    assert {"logit_scale", "positional_embedding", "visual.attnpool.positional_embedding", "ln_final.weight",
            "visual.bn1.weight", "visual.attnpool.q_proj.bias"} <= spared
    assert {"token_embedding.weight", "text_projection", "visual.conv1.weight"}.isdisjoint(spared)
    assert len(decay["params"]) + len(plain["params"]) == len(list(method.model.parameters()))


def test_a_published_torchscript_clip_is_evaluated_as_foreign_weights(coco: Path, tmp_path: Path,
                                                                     one_thread: None) -> None:
    """``lowlabel evaluate clip --ckpt RN50.pt --method-config ...``: the archive's weights end up in the model."""
    arch = small_arch(tmp_path / "small.json", quick_gelu=True)
    torch.manual_seed(0)
    source = build_clip(arch=arch).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(OpenAILayout(source, 64)), str(tmp_path / "RN50.pt"))
    cfg = config(coco, arch)
    torch.manual_seed(1)
    loaded = load_method_from_run(tmp_path / "RN50.pt", method_name="clip", config=cfg)
    state = loaded.nets["model"].state_dict()
    assert all(torch.equal(v, state[k]) for k, v in source.state_dict().items())
    wide = build_clip(arch=small_arch(tmp_path / "wide.json", embed_dim=48))
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(UserError, match=r"wide.pt: embedding width 48 does not match the model's 32"):
        load_method_from_run(tmp_path / "wide.pt", method_name="clip", config=cfg)


def test_predict_writes_what_predict_batch_returns(coco: Path, tmp_path: Path, one_thread: None) -> None:
    torch.manual_seed(0)
    method = clip.build(config(coco, small_arch(tmp_path / "small.json")))
    nets = {k: v.eval() for k, v in method.networks().items()}
    method.predict(nets, coco / "val2017", tmp_path / "pred")
    rows = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    files = sorted((coco / "val2017").glob("*.png"))
    assert [Path(r["image"]).name for r in rows] == [f.name for f in files]
    with torch.no_grad():
        batch = method.predict_batch(nets, [torch.from_numpy(load_rgb(f)).permute(2, 0, 1) for f in files])
    for row, pred in zip(rows, batch):
        assert row["name"] == ["red", "green", "blue"][pred.label] and row["score"] == pytest.approx(pred.score)
        assert [name for name, _ in row["top"]] == [["red", "green", "blue"][i] for i in pred.probs.argsort(
            descending=True).tolist()]


@pytest.mark.parametrize("case", ["root", "rename", "template", "weights", "image_size"])
def test_bad_input_is_one_line(case: str, coco: Path, tmp_path: Path) -> None:
    arch = small_arch(tmp_path / "small.json")
    cfg = config(coco, arch)
    if case == "root":
        cfg = config(tmp_path / "nowhere", arch)
        expected = "nowhere: data root does not exist"
    elif case == "rename":
        cfg = config(coco, arch, names={"diningtable": "dining table"})
        expected = "renames 'diningtable', which is not a category of the annotations (red, green, blue)"
    elif case == "template":
        cfg.eval = clip.ZeroShotConfig(templates=["a photo"])
        expected = "prompt template 'a photo' has no '{}'"
    elif case == "weights":
        cfg.model = clip.CLIPModelConfig(arch=arch, pretrained=str(tmp_path / "RN50.pt"))
        expected = "RN50.pt: no such file or folder"
    else:
        cfg.model = clip.CLIPModelConfig(arch=arch, image_size=80)
        expected = "image_size must be a positive multiple of 32"
    with pytest.raises(UserError) as err:
        clip.build(cfg)
    assert expected in str(err.value) and "\n" not in str(err.value)
