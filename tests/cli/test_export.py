"""``lowlabel export``: ONNX files that ONNX Runtime runs as PyTorch does (random inputs, two batch sizes, and two
image sizes where height and width are dynamic), safetensors that ``lowlabel.load`` reads back, the backbone alone in
torchvision's keys, and one-line errors for bad input.

Each exporting method is trained for one step on the method contract test's tiny dataset (its preparers), once for
the whole module.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import torchvision
import yaml
from safetensors.torch import load_file

import lowlabel
import lowlabel.methods
from lowlabel.cli import main as cli_main
from lowlabel.data.io import file_sha256
from lowlabel.engine import fit
from lowlabel.engine.config import load_config_file
from lowlabel.methods import method_module
from lowlabel.methods.base import ExportNet
from lowlabel.pretrained import backbone_state, save_pretrained
from lowlabel.structures import IMAGENET_MEAN, IMAGENET_STD
from tests.engine.helpers import toy_config
from tests.methods.test_contract import CONFIGS, TRAINER, preparer

EXPORTERS = ("cam", "da_wsol", "mlcam", "sipe", "seg", "classify", "contrastcorr")
TOLERANCE = 1e-4


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """``trained(name)``: a run folder of method ``name`` after one training step on a tiny dataset (made once)."""
    runs: dict[str, Path] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def get(name: str) -> Path:
        if name not in runs:
            tmp = tmp_path_factory.mktemp(name)
            module = method_module(name)
            cfg = preparer(name)(load_config_file(module.CONFIG, CONFIGS / name / "synth-quick.yaml"), tmp)
            cfg.trainer = dataclasses.replace(cfg.trainer, **TRAINER)
            torch.manual_seed(0)
            fit(module.build(cfg), run_dir=tmp / "run", progress=False)
            runs[name] = tmp / "run"
        return runs[name]

    yield get
    torch.set_num_threads(threads)


def random_inputs(spec: ExportNet, batch: int, grow: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Random inputs like the example ones with ``batch`` rows; images ``grow`` pixels taller and wider (8 - grow
    wider) when their height and width are dynamic; 0/1 labels with at least one class per row."""
    out = []
    for name, example in zip(spec.input_names, spec.example_inputs):
        shape = list(example.shape)
        shape[0] = batch
        if name == "labels":
            labels = (torch.rand(shape, generator=gen) < 0.3).float()
            labels[:, 0] = 1.0
            out.append(labels)
            continue
        if 2 in spec.dynamic_axes.get(name, {}):
            shape[2], shape[3] = shape[2] + grow, shape[3] + 8 - grow
        out.append(torch.randn(shape, generator=gen))
    return out


@pytest.mark.parametrize("name", EXPORTERS)
def test_onnx_runtime_matches_pytorch(
    name: str, trained: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained(name)
    code, out, err = run_cli(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "onnx")], capsys)
    assert code == 0, err
    assert "config.json" in out and "ONNX Runtime vs PyTorch" in out and not err
    meta = json.loads((tmp_path / "onnx" / "config.json").read_text())
    checkpoint = Path(meta["checkpoint"]["file"])
    assert meta["format"] == "lowlabel-onnx" and meta["method"] == name
    assert meta["lowlabel_version"] == lowlabel.__version__ and checkpoint.parent == run / "checkpoints"
    assert meta["checkpoint"]["sha256"] == file_sha256(checkpoint)

    loaded = lowlabel.load(run)
    specs = loaded.method.export_networks(loaded.nets)
    assert set(meta["networks"]) == set(specs)
    gen = torch.Generator().manual_seed(0)
    for net, spec in specs.items():
        entry = meta["networks"][net]
        assert [i["name"] for i in entry["inputs"]] == spec.input_names
        assert [o["name"] for o in entry["outputs"]] == spec.output_names
        assert all(i["shape"][0] == "batch" for i in entry["inputs"]) and entry["check"]["max_abs_diff"] <= TOLERANCE
        assert all(o["description"] for o in entry["outputs"])
        if name != "contrastcorr":  # LAB input, see test_contrastcorr_input_is_lab
            assert entry["preprocessing"]["mean"] == list(IMAGENET_MEAN) and entry["class_names"]
        session = onnxruntime.InferenceSession(
            str(tmp_path / "onnx" / entry["file"]), providers=["CPUExecutionProvider"]
        )
        for batch, grow in ((1, 0), (4, 16)):  # dynamic batch (and height and width)
            inputs = random_inputs(spec, batch, grow, gen)
            with torch.no_grad():
                expected = spec.module(*inputs)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(spec.output_names, {n: x.numpy() for n, x in zip(spec.input_names, inputs)})
            assert len(got) == len(expected)
            for output, ours, theirs in zip(spec.output_names, expected, got):
                assert theirs.shape == tuple(ours.shape), output
                diff = float(np.abs(theirs - ours.numpy()).max())
                assert diff <= TOLERANCE, f"{name} {net}.{output} at batch {batch}: max abs diff {diff}"


def test_contrastcorr_input_is_lab(trained: Callable[[str], Path], tmp_path: Path) -> None:
    from lowlabel.engine.export import export_run

    exported = export_run(trained("contrastcorr"), fmt="onnx", out=tmp_path)
    entry = json.loads((exported.folder / "config.json").read_text())["networks"]["encoder"]
    assert entry["preprocessing"] == {
        "colour": "LAB",
        "scale": 1 / 256,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "image_size": None,
    }
    assert entry["outputs"][0]["shape"][:2] == ["batch", 128] and exported.checks["encoder"].ok


def test_safetensors_round_trip(
    trained: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """contrastcorr: the frozen colour autoencoder is not written, and lowlabel.load rebuilds the same encoder."""
    run = trained("contrastcorr")
    code, out, err = run_cli(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "st")], capsys)
    assert code == 0, err
    assert set(load_file(str(tmp_path / "st" / "model.safetensors"))) == {
        f"encoder/{k}" for k in lowlabel.load(run).nets["encoder"].state_dict()
    }
    meta = json.loads((tmp_path / "st" / "config.json").read_text())
    assert meta["method"] == "contrastcorr" and meta["networks"] == ["encoder"]
    assert meta["checkpoint"]["sha256"] == file_sha256(Path(meta["checkpoint"]["file"]))
    assert meta["inference"]["encoder"]["preprocessing"]["colour"] == "LAB"

    original, again = lowlabel.load(run), lowlabel.load(tmp_path / "st")
    for key, value in original.nets["encoder"].state_dict().items():
        assert torch.equal(again.nets["encoder"].state_dict()[key], value), key
    image = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(original.predict(image).image, again.predict(image).image)


def test_a_seg_run_loads_and_predicts_without_its_seed_stage(trained: Callable[[str], Path], tmp_path: Path) -> None:
    """The pseudo masks are training data only: a DeepLabV3 run copied elsewhere, or whose sipe / mlcam run is gone,
    still loads, predicts and evaluates."""
    run = trained("seg")
    seed_stage = Path(yaml.safe_load((run / "config.yaml").read_text())["init_from"])
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    before = lowlabel.load(run).predict(image).mask
    hidden = tmp_path / "hidden"
    seed_stage.rename(hidden)
    try:
        loaded = lowlabel.load(run)
        assert torch.equal(loaded.predict(image).mask, before)
        with pytest.raises(FileNotFoundError, match=f"init_from {seed_stage} does not exist"):
            loaded.method.train_dataset()  # training still needs it, and says so
    finally:
        hidden.rename(seed_stage)


def test_default_folder_is_inside_the_run(trained: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    run = trained("cam")
    code, out, err = run_cli(["export", str(run / "checkpoints" / "last.ckpt"), "--format", "safetensors"], capsys)
    assert code == 0, err
    assert (run / "export" / "safetensors" / "model.safetensors").is_file()
    assert set(json.loads((run / "export" / "safetensors" / "config.json").read_text())["inference"]) == {"model"}


def test_backbone_only_loads_into_a_plain_torchvision_resnet(
    trained: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """seg's deeplabv3_small: a stride-16 ResNet-18 in stages, written in torchvision's keys."""
    run = trained("seg")
    argv = ["export", str(run), "--format", "safetensors", "--backbone-only", "--out", str(tmp_path)]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["layout"] == "torchvision" and meta["method"] == "seg" and meta["file"] == "backbone.safetensors"
    state = load_file(str(tmp_path / "backbone.safetensors"))
    resnet = torchvision.models.resnet18()
    result = resnet.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    resnet.fc = torch.nn.Identity()
    resnet.load_state_dict(state, strict=True)
    ours = lowlabel.load(run).nets["model"].net.backbone.body  # the StagedResNet
    assert torch.equal(resnet.layer4[1].conv2.weight, ours.body[4][1].conv2.weight)
    assert torch.equal(resnet.bn1.running_var, ours.body[0][1].running_var)


def test_backbone_only_of_resnet_small_loads_into_our_backbone(
    trained: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lowlabel.models.backbones import build_backbone

    run = trained("cam")
    argv = ["export", str(run), "--format", "safetensors", "--backbone-only", "--out", str(tmp_path)]
    assert run_cli(argv, capsys)[0] == 0
    assert json.loads((tmp_path / "config.json").read_text())["layout"] == "lowlabel"
    model = lowlabel.load(run).nets["model"]
    backbone = build_backbone(
        name="resnet_small", width=model.backbone.num_features // 8, pretrained=str(tmp_path / "backbone.safetensors")
    )
    for key, value in model.backbone.body.state_dict().items():
        assert torch.equal(backbone.body.state_dict()[key], value), key


def test_every_resnet_layout_maps_to_torchvision_keys() -> None:
    """The ResNets lowlabel builds (CAM's ResNet-50, the stride-16 staged ResNets with frozen BatchNorm,
    DeepLabV3's torchvision backbone, ContrastCorr's resnet18_os8) load strictly into torchvision's ResNets."""
    from lowlabel.models.backbones import build_backbone
    from lowlabel.models.cam_heads import CAMNet
    from lowlabel.models.correspondence_nets import frame_encoder
    from lowlabel.models.seg_nets import MultiLabelCAMNet, SegNet, build_staged_backbone

    torch.manual_seed(0)
    staged = build_staged_backbone("resnet18_os16", frozen_bn=True, freeze_stem=True)
    nets = [
        ("resnet50", CAMNet(backbone=build_backbone(name="resnet50"), num_classes=3)),
        ("resnet18", MultiLabelCAMNet(backbone=staged, num_classes=3, side_channels=(8, 8, 8, 8), detach_stage=2)),
        ("resnet50", SegNet(arch="deeplabv3_resnet50", num_classes=3)),
        ("resnet18", frame_encoder("resnet18_os8")),
    ]
    for arch, net in nets:
        state, layout = backbone_state(net.state_dict(), Path(arch))
        resnet = getattr(torchvision.models, arch)()
        resnet.fc = torch.nn.Identity()
        resnet.load_state_dict(state, strict=True)
        assert layout == "torchvision"
    with pytest.raises(ValueError, match="no ResNet backbone"):
        backbone_state(CAMNet(backbone=build_backbone(name="vgg16"), num_classes=3).state_dict(), Path("vgg.ckpt"))


def one_line_error(code: int, err: str) -> str:
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"  # a run that has not reached its first checkpoint
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("trainer: {}\n")
    err = one_line_error(*run_cli(["export", str(run), "--format", "onnx"], capsys)[::2])
    assert "no checkpoint" in err and str(run) in err

    err = one_line_error(*run_cli(["export", str(run), "--format", "tflite"], capsys)[::2])
    assert "unknown export format 'tflite'; choose onnx or safetensors" in err

    err = one_line_error(*run_cli(["export", str(tmp_path / "nope"), "--format", "onnx"], capsys)[::2])
    assert "does not exist" in err and "nope" in err

    monkeypatch.setitem(lowlabel.methods.METHODS, "toy", "tests.toy_method")
    toy = save_pretrained(method_module("toy").build(toy_config()), tmp_path / "toy")
    err = one_line_error(*run_cli(["export", str(toy), "--format", "onnx"], capsys)[::2])
    assert "method 'toy' has no networks to export to ONNX" in err

    err = one_line_error(*run_cli(["export", str(toy), "--format", "onnx", "--backbone-only"], capsys)[::2])
    assert "--backbone-only" in err and "--format safetensors" in err

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were not installed
    err = one_line_error(*run_cli(["export", str(toy), "--format", "onnx"], capsys)[::2])
    assert 'pip install "lowlabel[export]"' in err
