"""The paper backbone of SIPE/IRN: stride, frozen BN, frozen stem, and loading weights a user brings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from lowlabel.models.resnet_os16 import FixedBatchNorm2d, StagedResNet


def test_output_stride_and_stage_channels() -> None:
    x = torch.randn(1, 3, 64, 96)
    for stride in (16, 32):
        net = StagedResNet(arch="resnet18", output_stride=stride, frozen_bn=False, freeze_stem=False).eval()
        _, feats = net.forward_intermediates(x)
        assert [f.shape[1] for f in feats[1:]] == [64, 128, 256, 512]
        assert feats[-1].shape[2:] == (64 // stride, 96 // stride)
        assert net.feature_stride == stride


def test_frozen_bn_uses_running_statistics_in_training_mode() -> None:
    net = StagedResNet(arch="resnet18", frozen_bn=True, freeze_stem=True).train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(isinstance(m, FixedBatchNorm2d) for m in bns)
    x = torch.randn(4, 3, 32, 32)
    alone = net(x[:1])
    together = net(x)[:1]  # batch statistics would make the first image depend on the others
    assert torch.allclose(alone, together, atol=1e-5)
    before = bns[-1].running_mean.clone()
    net(x).sum().backward()
    assert torch.equal(bns[-1].running_mean, before)  # statistics are not updated
    assert bns[-1].weight.grad is not None  # the affine parameters still train
    stem_conv = net.body[0][0]
    assert not stem_conv.weight.requires_grad and net.body[1][0].conv1.weight.requires_grad


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_a_torchvision_state_dict_from_a_file(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(3)
    src = torchvision.models.resnet18(weights=None).state_dict()
    src["bn1.running_var"].uniform_(0.5, 2.0)  # fresh BN statistics are all ones: make them checkable
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(src, str(path))
    else:
        torch.save(src, path)
    net = StagedResNet(arch="resnet18", pretrained=str(path))
    # no fc head (a self-supervised backbone), no num_batches_tracked (files saved before PyTorch 0.4)
    headless = {k: v for k, v in src.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    torch.save(headless, tmp_path / "headless.pth")
    assert torch.equal(StagedResNet(arch="resnet18", pretrained=str(tmp_path / "headless.pth")).body[1][0].conv1.weight,
                       src["layer1.0.conv1.weight"])
    assert torch.equal(net.body[3][1].conv2.weight, src["layer3.1.conv2.weight"])
    assert torch.equal(net.body[0][1].running_var, src["bn1.running_var"])
    # the stride change keeps the weights: layer4's first block now has stride 1
    assert net.body[4][0].conv1.stride == (1, 1)
    assert torch.equal(net.body[4][0].conv1.weight, src["layer4.0.conv1.weight"])


def test_bad_weight_files_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        StagedResNet(arch="resnet18", pretrained=str(tmp_path / "nope.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pth: cannot read pretrained weights"):
        StagedResNet(arch="resnet18", pretrained=str(corrupt))
    other = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), other)
    with pytest.raises(ValueError, match=r"resnet34.pth: not a torchvision state dict for this backbone"):
        StagedResNet(arch="resnet18", pretrained=str(other))
    thin = torchvision.models.resnet18(weights=None).state_dict()
    thin["layer2.0.conv1.weight"] = thin["layer2.0.conv1.weight"][:64]
    torch.save(thin, tmp_path / "thin.pth")
    with pytest.raises(ValueError, match=r"layer2.0.conv1.weight has shape \(64, 64, 3, 3\), the model expects "
                                         r"\(128, 64, 3, 3\)"):
        StagedResNet(arch="resnet18", pretrained=str(tmp_path / "thin.pth"))
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"a": 1}}, wrapped)
    with pytest.raises(ValueError, match="not a state dict"):
        StagedResNet(arch="resnet18", pretrained=str(wrapped))
