"""LGCL's networks: strides and tap shapes, the attention composition (hand cases, exact identity, gradients), the
PatchGAN's 70 x 70 receptive field, and the projection heads."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lowlabel.models import lgcl_nets as N

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_encoder_strides_and_cut_tap_shapes_on_shapesworld_size() -> None:
    enc = N.ResnetEncoder(width=8)
    assert enc.layers[1].stride == (1, 1) and enc.layers[4].stride == (2, 2) and enc.layers[7].stride == (2, 2)
    assert enc.nce_layers == (0, 4, 7, 10, 14)  # CUT's 0, 4, 8, 12, 16: pad, two downsampling convs, blocks 1 and 5
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        h, taps = enc.forward_intermediates(x, enc.nce_layers)
        last, early = enc.forward_intermediates(x, [7, 0], stop_early=True)
    assert h.shape == (1, 32, 24, 40) and enc.out_channels == 32 and enc.feature_stride == 4
    assert [tuple(t.shape[1:]) for t in taps] == [(3, 102, 166), (16, 48, 80), (32, 24, 40), (32, 24, 40),
                                                  (32, 24, 40)]
    assert [enc.channels[i] for i in enc.nce_layers] == [3, 16, 32, 32, 32]
    assert torch.equal(taps[0][:, :, 3:-3, 3:-3], x)  # layer 0 is the reflection-padded input
    assert torch.equal(early[0], taps[2]) and torch.equal(early[1], taps[0]) and torch.equal(last, taps[2])
    assert N.ResnetEncoder(width=2, n_blocks=3).nce_layers == (0, 4, 7, 10, 12)  # fewer blocks: the last one
    with pytest.raises(ValueError, match="out of range"):
        enc.forward_intermediates(x, [19])


def test_translator_shapes_softmax_and_size_check() -> None:
    torch.manual_seed(0)
    net = N.AttentionTranslator(width=4, n_blocks=2)
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        out = net.translate(x)
        feats = net.lg_features(x)
    assert out.image.shape == x.shape and out.content.shape == (2, 9, 3, 16, 24)
    assert out.attention.shape == (2, 10, 16, 24) and float(out.attention.min()) >= 0
    torch.testing.assert_close(out.attention.sum(dim=1), torch.ones(2, 16, 24))
    assert float(out.content.abs().max()) <= 1.0
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 4, 6), (8, 8, 12), (4, 16, 24), (10, 16, 24)]
    assert net.lg_channels == (16, 8, 4, 10)
    assert float(feats[0].min()) >= 0.0  # E_B's c(4w)-s2-k3 after its norm and ReLU (layer 9)
    torch.testing.assert_close(torch.softmax(feats[3], dim=1), out.attention)  # the last tap: G_A's logits
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.zeros(1, 3, 18, 24))


def test_local_global_weights_grow_with_the_stride_of_their_layer() -> None:
    """DetCo's weights grow with the stage's stride (res2 0.1 ... res5 1.0); LGCL's are mapped the same way onto
    lg_features: the coarsest tap (E_B's c(4w), H/4) gets 1.0 and G_A's full-resolution logits 0.1."""
    from lowlabel.losses.lgcl import LG_LAYER_WEIGHTS
    from lowlabel.methods.cross_domain.lgcl import LocalGlobalConfig

    net = N.AttentionTranslator(width=4, n_blocks=2)
    with torch.no_grad():
        strides = [32 // f.shape[-1] for f in net.lg_features(torch.zeros(1, 3, 32, 32))]
    assert strides == [4, 2, 1, 1]
    assert LG_LAYER_WEIGHTS == LocalGlobalConfig().layer_weights == (1.0, 0.7, 0.4, 0.1)
    order = sorted(range(4), key=lambda i: (-strides[i], i))  # coarse to fine, E_B before G_A at equal stride
    assert [LG_LAYER_WEIGHTS[i] for i in order] == sorted(LG_LAYER_WEIGHTS, reverse=True)
    # the mask logits are the lightest (the first reading gave them 1.0)
    assert LG_LAYER_WEIGHTS[3] == min(LG_LAYER_WEIGHTS)


def test_small_translator_runs_on_a_shapesworld_image() -> None:
    net = N.AttentionTranslator(width=16, n_blocks=4)
    with torch.no_grad():
        y = net(torch.rand(1, 3, 96, 160))
    assert y.shape == (1, 3, 96, 160) and bool(torch.isfinite(y).all())
    assert sum(p.numel() for p in net.parameters()) < 1_000_000


def test_compose_hand_cases() -> None:
    """n = 2 content maps on a 1 x 3 image: pixel 0 takes C_1, pixel 1 the input, pixel 2 a 0.25 / 0.25 / 0.5 mix."""
    x = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    content = torch.stack([torch.full((3, 1, 3), 10.0), torch.full((3, 1, 3), -4.0)])[None]  # (1, 2, 3, 1, 3)
    attention = torch.tensor([[1.0, 0.0, 0.25], [0.0, 0.0, 0.25], [0.0, 1.0, 0.5]]).view(1, 3, 1, 3)
    out = N.compose(x, content, attention)
    expected = torch.tensor([10.0, 2.0, 0.25 * 10 - 0.25 * 4 + 0.5 * 3]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="compose needs"):
        N.compose(x, content, attention[:, :2])


def test_translator_returns_x_exactly_when_the_background_mask_is_one() -> None:
    torch.manual_seed(0)
    net = N.AttentionTranslator(width=4, n_blocks=1)
    with torch.no_grad():
        net.attention.out[1].bias[-1] = 200.0  # the other masks get exp(-200) = 0 in float32: A_{n+1} = 1 exactly
    x = torch.rand(2, 3, 8, 12) * 2 - 1
    with torch.no_grad():
        out = net.translate(x)
    assert torch.equal(out.attention[:, -1], torch.ones(2, 8, 12))
    assert torch.equal(out.image, x)
    content = torch.rand(2, 9, 3, 8, 12)
    background = torch.zeros(2, 10, 8, 12)
    background[:, -1] = 1.0
    assert torch.equal(N.compose(x, content, background), x)


def test_every_translator_parameter_gets_a_gradient() -> None:
    """Through the composition, a loss on G(x) reaches G_C, G_A and E_B."""
    torch.manual_seed(0)
    net = N.AttentionTranslator(width=4, n_blocks=2)
    x = torch.rand(2, 3, 8, 12) * 2 - 1
    (net(x) * torch.randn(2, 3, 8, 12)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
        assert bool(torch.isfinite(p.grad).all()), name


def test_discriminator_shape_gradients_and_70_pixel_receptive_field() -> None:
    torch.manual_seed(0)
    disc = N.PatchDiscriminator(width=4)
    scores = disc(torch.randn(2, 3, 96, 160))
    assert scores.shape == (2, 1, 10, 18)  # 96 -> 48 -> 24 -> 12 -> 11 -> 10
    scores.pow(2).mean().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in disc.parameters())
    # without the instance norms (which couple all positions), the input pixels one score depends on: for output
    # (7, 7) the window starts at 2 * (2 * (2 * (7 - 1 - 1) - 1) - 1) - 1 = 33 and spans 70 pixels
    plain = copy.deepcopy(disc)
    for i, layer in enumerate(plain.model):
        if isinstance(layer, nn.InstanceNorm2d):
            plain.model[i] = nn.Identity()
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    plain(x)[0, 0, 7, 7].backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3))).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2))).flatten()
    assert (int(rows.min()), int(rows.max())) == (33, 102) and (int(cols.min()), int(cols.max())) == (33, 102)


def test_patch_heads_have_cut_sizes_and_unit_norm() -> None:
    heads = N.patch_heads([3, 32])
    assert isinstance(heads[0].mlp[0], nn.Linear) and heads[0].mlp[0].in_features == 3
    assert heads[1].mlp[0].in_features == 32 and heads[1].mlp[2].out_features == 256
    out = heads[1](torch.randn(2, 5, 32))
    assert out.shape == (2, 5, 256)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 5))


def test_local_heads_concatenate_the_cells_in_their_order() -> None:
    torch.manual_seed(0)
    heads = N.LocalGlobalHeads(in_channels=[3, 2], cells=4, hidden=8, dim=5)
    feats = [torch.randn(2 * 4, 3, 2, 2), torch.randn(2 * 4, 2, 3, 3)]  # 2 images x 4 patches
    local = heads.embed_local(feats)
    pooled = feats[1].mean(dim=(2, 3))  # (8, 2)
    image1 = torch.cat([pooled[4], pooled[5], pooled[6], pooled[7]])  # image 1's patches in their order
    torch.testing.assert_close(local[1][1], N.l2_normalize(heads.local_heads[1].mlp(image1)))
    swapped = [f.view(2, 4, *f.shape[1:])[:, [1, 0, 2, 3]].flatten(0, 1) for f in feats]
    assert not torch.allclose(heads.embed_local(swapped)[0], local[0])  # the order of the patches matters
    glob = heads.embed_global([torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)])
    assert [tuple(g.shape) for g in glob] == [(2, 5), (2, 5)]
    torch.testing.assert_close(glob[0].norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="B \\* 4 rows"):
        heads.embed_local([torch.randn(6, 3, 2, 2), torch.randn(6, 2, 2, 2)])
    with pytest.raises(ValueError, match="expected 2 feature maps"):
        heads.embed_global(feats[:1])


def test_cut_init_is_xavier_normal_with_gain_002() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(300, 500)
    N.init_cut_weights(layer)
    expected_std = 0.02 * (2.0 / (300 + 500)) ** 0.5
    assert float(layer.weight.detach().std()) == pytest.approx(expected_std, rel=0.02)
    assert float(layer.bias.detach().abs().max()) == 0.0
