"""Backbone contract tests (timm style): shapes, strides, no NaN, every parameter gets a gradient."""

from __future__ import annotations

import pytest
import torch

from lowlabel.models.backbones import build_backbone
from lowlabel.models.cam_heads import CAMNet
from lowlabel.models.weights import load_torchvision_weights

# name, input size, expected (D, h) of the final map
# The benchmark backbones take 10-20 s each on 2 shared cores (building 25M-140M parameters): slow.
CASES = [
    ("resnet_small", 64, (256, 8)),
    pytest.param("resnet50", 64, (2048, 8), marks=pytest.mark.slow),
    pytest.param("vgg16", 64, (1024, 4), marks=pytest.mark.slow),
    pytest.param("inception_v3", 64, (1024, 8), marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "size", "expected"), CASES)
def test_shapes_gradients_no_nan(name: str, size: int, expected: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = CAMNet(backbone=build_backbone(name=name), num_classes=3)
    x = torch.randn(2, 3, size, size)
    out = net(x)
    d, h = expected
    assert out.features.shape == (2, d, h, h)
    assert out.pooled.shape == (2, d) and out.logits.shape == (2, 3)
    assert net.backbone.num_features == d and size // net.backbone.feature_stride == h
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.features).all()
    logits, cams = net.cams(x)
    assert cams.shape == (2, 3, h, h)
    # GAP of the CAM equals the logits (the 1x1 conv commutes with the pooling)
    assert torch.allclose(cams.mean(dim=(2, 3)), logits, atol=1e-4)
    (out.logits.sum() + out.features.mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, f"no gradient for {missing[:5]}"


def test_large_feature_map_option_and_intermediates() -> None:
    small = build_backbone(name="resnet50", large_feature_map=False)
    x = torch.randn(1, 3, 32, 32)
    assert small.forward_features(x).shape[-1] == 2  # stride 16
    final, inter = small.forward_intermediates(x, indices=[-1, 1])
    assert [t.shape[1] for t in inter] == [256, 2048] and final.shape[1] == 2048


@pytest.mark.slow
def test_inception_large_map_is_28_at_224() -> None:
    net = build_backbone(name="inception_v3", large_feature_map=True).eval()
    assert net.forward_features(torch.randn(1, 3, 224, 224)).shape[-1] == 28


def test_param_groups_and_reset_classifier() -> None:
    net = CAMNet(backbone=build_backbone(name="vgg16"), num_classes=5)
    groups = net.param_groups(lr=0.1, new_layer_ratio=10.0)
    assert groups[1]["lr"] == pytest.approx(1.0)
    n_new = sum(p.numel() for p in groups[1]["params"])
    assert n_new == 512 * 1024 * 9 + 1024 + 1024 * 5 + 5  # conv6 + head
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in net.parameters())
    net.reset_classifier(7)
    assert net(torch.randn(1, 3, 32, 32)).logits.shape == (1, 7)


def test_pretrained_local_file(tmp_path) -> None:
    from torchvision.models import resnet50

    src = resnet50(weights=None)
    path = tmp_path / "r50.pth"
    torch.save(src.state_dict(), path)
    bb = build_backbone(name="resnet50", pretrained=str(path))
    assert torch.equal(bb.body[1][0].conv1.weight, src.layer1[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backbone(name="resnet50", pretrained=str(tmp_path / "nope.pth"))
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision state dict"):
        load_torchvision_weights(resnet50(weights=None), str(tmp_path / "bad.pth"))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(name="resnet9000")


def test_resnet_small_from_a_lowlabel_run(tmp_path) -> None:
    """resnet_small's ``pretrained`` is a toolkit checkpoint: its ``backbone.body.*`` weights are loaded."""
    from torch import nn

    from lowlabel.pretrained import save_pretrained

    class Net(nn.Module):  # a method's network: a backbone plus a head that must be ignored
        def __init__(self, width: int) -> None:
            super().__init__()
            self.backbone = build_backbone(name="resnet_small", width=width)
            self.head = nn.Conv2d(8 * width, 3, 1)

    torch.manual_seed(0)
    src = Net(4)
    save_pretrained({"model": src}, tmp_path / "run")
    bb = build_backbone(name="resnet_small", width=4, pretrained=str(tmp_path / "run"))
    for key, value in bb.state_dict().items():
        assert torch.equal(value, src.backbone.state_dict()[key]), key
    fresh = build_backbone(name="resnet_small", width=4)
    assert not torch.equal(fresh.body[1].conv1.weight, bb.body[1].conv1.weight)
    with pytest.raises(ValueError, match="do not fit"):
        build_backbone(name="resnet_small", width=8, pretrained=str(tmp_path / "run"))
    save_pretrained({"model": nn.Linear(2, 2)}, tmp_path / "other")
    with pytest.raises(ValueError, match="no backbone.body"):
        build_backbone(name="resnet_small", width=4, pretrained=str(tmp_path / "other"))
    with pytest.raises(FileNotFoundError):
        build_backbone(name="resnet_small", width=4, pretrained=str(tmp_path / "missing"))
