"""Every real config loads a user's torchvision-layout backbone file into the network it describes.

For each YAML under ``configs/`` that names pretrained weights (``model.pretrained`` for cam/da_wsol/mlcam/sipe and
the detector, ``model.pretrained_backbone`` for seg), a randomly initialised torchvision model of the right
architecture is saved to a ``.pth`` (BatchNorm statistics randomised too, so they differ from a fresh model's), the
field is pointed at it, and the config's network is built the way its method builds it. Every backbone tensor of the
file must then be in the network. (``lowlabel train seg --config configs/seg/voc12.yaml`` with a local file
once died with an ImportError.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
import yaml
from torch import nn

from lowlabel.engine.config import load_config_file
from lowlabel.methods import method_module

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# backbone / arch name in a config -> the torchvision classifier whose state dict users bring
TORCHVISION = {
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet50_os16": "resnet50",
    "resnet101_os16": "resnet101",
    "deeplabv3_resnet50": "resnet50",
    "deeplabv3_resnet101": "resnet101",
    "vgg16": "vgg16",
    "inception_v3": "inception_v3",
}


def real_configs() -> list[Any]:
    params = []
    for path in sorted(CONFIGS.glob("*/*.yaml")):
        model = (yaml.safe_load(path.read_text()) or {}).get("model", {})
        field = "pretrained_backbone" if "pretrained_backbone" in model else "pretrained"
        if not model.get(field) or str(model[field]).startswith("synth:"):
            continue  # "" = from scratch; synth:pretrain = the toolkit's own backbone (tests/methods/classification)
        name = f"{path.parent.name}/{path.stem}"
        arch = TORCHVISION[model.get("arch", model.get("backbone"))]
        params.append(pytest.param(path, field, arch, id=name))
    return params


_FILES: dict[str, tuple[Path, dict[str, torch.Tensor]]] = {}


def weight_file(arch: str, folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random-init torchvision ``arch`` state dict saved once per session, scaled by 1.5 and with random
    BatchNorm statistics, so that no freshly initialised network holds its values."""
    if arch not in _FILES:
        torch.manual_seed(0)
        kwargs = {"init_weights": False, "aux_logits": True} if arch == "inception_v3" else {}
        model = getattr(torchvision.models, arch)(weights=None, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)
        path = folder / f"{arch}.pth"
        state = model.state_dict()
        torch.save(state, path)
        _FILES[arch] = (path, state)
    return _FILES[arch]


def build_network(method: str, cfg: Any, weights: Path) -> nn.Module:
    """The network ``cfg`` describes, built by the method's own net-building function."""
    if method in ("cam", "da_wsol"):
        from lowlabel.methods.wsol.common import build_cam_net as build_wsol_net

        cfg.model.pretrained = str(weights)
        return build_wsol_net(cfg.model, 7)
    if method in ("sipe", "mlcam"):
        from lowlabel.methods.wsss.common import build_cam_net as build_wsss_net

        cfg.model.pretrained = str(weights)
        return build_wsss_net(cfg.model, 20, side_features=method == "sipe")
    if method == "detector":
        from lowlabel.methods.cross_domain.common import build_network as build_detector_net

        cfg.model.pretrained = str(weights)
        return build_detector_net(cfg.model, len(cfg.data.classes) or 8)
    assert method == "seg", method
    from lowlabel.models.seg_nets import SegNet

    cfg.model.pretrained_backbone = str(weights)
    return SegNet(arch=cfg.model.arch, num_classes=21, pretrained_backbone=str(weights))


@pytest.mark.parametrize(("path", "field", "arch"), real_configs())
def test_real_config_loads_a_torchvision_backbone_file(
    path: Path, field: str, arch: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    method = path.parent.name
    cfg = load_config_file(method_module(method).CONFIG, path)
    assert getattr(cfg.model, field), f"{path}: {field} should name weights"
    weights, state = weight_file(arch, tmp_path_factory.getbasetemp())
    net = build_network(method, cfg, weights)
    by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for tensor in net.state_dict().values():
        by_shape.setdefault(tuple(tensor.shape), []).append(tensor)
    classifier = ("fc.", "classifier.", "AuxLogits.")
    checked = [k for k, v in state.items() if v.is_floating_point() and not k.startswith(classifier)]
    assert len(checked) > 100
    missing = [k for k in checked if not any(torch.equal(state[k], t) for t in by_shape.get(tuple(state[k].shape), []))]
    assert not missing, f"{len(missing)} of {len(checked)} tensors of {weights.name} not in the network: {missing[:5]}"
