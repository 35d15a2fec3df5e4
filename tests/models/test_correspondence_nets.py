"""ContrastCorr's networks: output stride 8 and widths, torchvision weights into the stride-1 ResNet-18, the colour
autoencoder's shapes and that it can fit an image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from lowlabel.models.correspondence_nets import ColourAutoencoder, frame_encoder


@pytest.mark.parametrize(("name", "channels"), [("resnet18_os8", 512), ("resnet_small", 64)])
def test_frame_encoders_have_stride_8(name: str, channels: int) -> None:
    net = frame_encoder(name, width=8).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, channels, 8, 12) and net.num_features == channels


def test_resnet18_os8_loads_torchvision_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    net = frame_encoder("resnet18_os8", pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(net.body[6][0].conv1.weight, ref.layer3[0].conv1.weight)  # layer3, stride now 1
    assert net.body[6][0].conv1.stride == (1, 1) and net.body[7][0].downsample[0].stride == (1, 1)
    with pytest.raises(ValueError, match="unknown frame encoder"):
        frame_encoder("vgg16")


def test_colour_autoencoder_shapes_and_fit() -> None:
    torch.manual_seed(0)
    ae = ColourAutoencoder(channels=16)
    lab = torch.rand(2, 3, 2, 3).repeat_interleave(8, 2).repeat_interleave(8, 3) * 2 - 1  # 8 x 8 colour blocks
    assert ae.encode(lab).shape == (2, 16, 2, 3) and ae(lab).shape == lab.shape
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = (ae(lab) - lab).abs().mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.6 * first
    with pytest.raises(ValueError, match="multiple of 4"):
        ColourAutoencoder(channels=18)
