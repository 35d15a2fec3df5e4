"""The networks of LGCL: an attention-composed ResNet translator, a PatchGAN discriminator and projection heads.

LGCL, BMVC 2024, arXiv:2410.05058 (Triantafyllidou et al.); the supplementary's architecture table, CUT (Park et al.,
ECCV 2020) for everything the table leaves out. Written from the formulas; no AttentionGAN code is used.

* :class:`ResnetEncoder` E_B: ``[c(w)-s1-k7, c(2w)-s2-k3, c(4w)-s2-k3, n_blocks x ResBlock(4w)]``, each conv followed
  by InstanceNorm and ReLU; ``h = E_B(x)`` is (B, 4w, H/4, W/4). Its layers are one flat list so that PatchNCE can
  tap them by index (``forward_intermediates``).
* :class:`AttentionTranslator`: E_B, the content generator G_C ``[u(2w)-s2-k7, u(w)-s2-k3, u(3n)-s1-k7, tanh]`` and
  the attention generator G_A ``[u(2w)-s2-k7, u(w)-s2-k3, u(n+1)-s1-k7, softmax over the n+1 channels]``, composed as
  ``G(x) = sum_t C_t * A_t + x * A_{n+1}`` (:func:`compose`), n = 9.
* :class:`ResnetGenerator`: CUT's plain generator, E_B and a decoder to RGB with tanh (the CUT baseline).
* :class:`PatchDiscriminator`: pix2pix's 70 x 70 PatchGAN (n_layers = 3), one score per patch.
* :class:`ProjectionHead`, :func:`patch_heads`: CUT's PatchNCE heads (Linear(C, 256)-ReLU-Linear(256, 256), L2
  normalised, :func:`l2_normalize`), one per tapped layer.
* :class:`LocalGlobalHeads` and :func:`lg_features`: the 4 global and 4 local heads of the local-global loss on G_A.

With ``width=64, n_blocks=9`` the nets are the paper's (CUT's ``ngf=ndf=64``, resnet_9blocks). ``width=16,
n_blocks=4`` is the small option for ShapesWorld (96 x 160) on a CPU: the translator then has 0.56 M parameters
(14.5 M at full size) and a forward pass takes about 30 ms per image on one CPU thread.

Open points of the paper, decided here (reference/methods.md, section 1d):

* **Stem stride 1.** The table prints ``c64-s2-k7``, but with two more stride-2 convs the encoder would reach H/8
  while both decoders upsample only x4, and ``x * A_{n+1}`` needs G(x) at the size of x. CUT and AttentionGAN both
  use a stride-1 stem, so the s2 is read as a typo. Inputs must have H and W divisible by 4.
* **Plain stride-2 convs** for the downsampling, as the table prints (CUT's default blurs then subsamples). CUT's
  PatchNCE taps ``0, 4, 8, 12, 16`` (padded input, first and second downsampling conv before its norm, first and
  fifth residual block) are ``0, 4, 7, 10, 14`` in this layer list (:attr:`ResnetEncoder.nce_layers`); the two
  downsampling taps sit after the stride (H/2, H/4) rather than before it (H, H/2) as in CUT's blur-pool version.
* **First upsampling kernel 7** (``u128-s2-k7``) as printed: ConvTranspose2d(k=7, s=2, p=3, output_padding=1)
  doubles the size exactly. The other layers are printed with the usual kernels and are taken as they are.
* **Local-global layers and weights.** The layers are printed (E_B's ``c256-s2-k3`` after its norm and ReLU, G_A's
  ``u128``, ``u64`` and ``u10``, the last read as the attention logits before the softmax); which weight goes to which
  is not. They are DetCo's weights, which grow with the stage's stride (res2 -> 0.1 ... res5 -> 1.0), so they are
  mapped by stride here: ``c256`` (H/4) -> 1.0, ``u128`` (H/2) -> 0.7, ``u64`` (H) -> 0.4, ``u10`` (H) -> 0.1.
  The first reading was 0.1 ... 1.0 in the order E_B -> G_A's output. On ShapesWorld the term on the logits flattens
  the masks towards one mix of the content maps at weight 1.0 and still at 0.1; without it the masks are as without
  L_GA (benchmarks/README, "LGCL: what L_GA does to the attention generator"). The paper names the layer, so it stays.
* **Local patch encoding**, as in PIRL and DetCo: each of the 16 patches goes through E_B and G_A on its own (its
  features see only that patch), is average-pooled per layer, and the 16 vectors are concatenated in the shuffled
  order and fed to the local head (16 C -> 256 -> 128). Concatenation is what makes the shuffle matter; a mean over
  the patches would ignore it. Global views are average-pooled, then go through the global head (C -> 256 -> 128).
* **Head sizes**: 256 hidden units (CUT's ``netF_nc``) and 128-d embeddings (MoCo v2 / DetCo).
* **No conv bias before an InstanceNorm** (CUT keeps one): the norm subtracts the channel mean, so such a bias never
  changes the output and its gradient is zero.

Weights are initialised as in CUT (``--init_type xavier --init_gain 0.02``, biases 0): :func:`init_cut_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INIT_GAIN = 0.02  # CUT's --init_gain with --init_type xavier
NUM_CONTENT = 9  # n content maps, n + 1 attention masks (LGCL supp., AttentionGAN-v2)
PATCH_HEAD_DIM = 256  # CUT's --netF_nc
LG_HIDDEN = 256
LG_DIM = 128  # MoCo v2 / DetCo embedding size
LG_CELLS = 16  # 4 x 4 local patches (LGCL supp. section 6.4; DetCo uses 3 x 3)
NORM_EPS = 1e-7  # as in CUT's Normalize


def init_cut_weights(net: nn.Module, gain: float = INIT_GAIN) -> None:
    """CUT's ``init_weights(init_type='xavier')``: conv and linear weights ~ Xavier-normal(gain), biases 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def l2_normalize(x: Tensor, dim: int = -1) -> Tensor:
    """``x / max(||x||, 1e-7)`` along ``dim``: unit norm exactly. CUT's ``Normalize(2)`` divides by ``||x|| + 1e-7``,
    which with its 0.02-gain init (head outputs of norm ~1e-4) leaves the vectors ~0.1 % short of unit length."""
    return F.normalize(x, dim=dim, eps=NORM_EPS)


def _conv_norm_relu(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.InstanceNorm2d(cout),
            nn.ReLU()]


class ResnetBlock(nn.Module):
    """``x + [pad1, conv3, IN, ReLU, pad1, conv3, IN](x)`` (CycleGAN's block, reflection padding, no dropout)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetEncoder(nn.Module):
    """E_B: (B, 3, H, W) -> (B, 4w, H/4, W/4), H and W divisible by 4.

    ``layers`` (flat): 0 reflection pad 3 | 1 conv7 | 2 IN | 3 ReLU | 4 conv3 s2 | 5 IN | 6 ReLU | 7 conv3 s2 | 8 IN |
    9 ReLU | 10 .. 9 + n_blocks residual blocks. ``forward_intermediates`` returns the outputs of chosen indices (no
    ReLU works in place, so a tapped output is never overwritten by the next layer).

    Args:
        width: stem channels w (CUT's ngf = 64); the downsampling convs have 2w and 4w.
        n_blocks: residual blocks (9 = CUT's resnet_9blocks).
        in_channels: image channels.
        init_gain: Xavier gain (:func:`init_cut_weights`); None keeps PyTorch's default init.
    """

    lg_layer = 9  # LGCL's "c256-s2-k3" after its norm and ReLU: the first local-global layer

    def __init__(self, *, width: int = 64, n_blocks: int = 9, in_channels: int = 3,
                 init_gain: float | None = INIT_GAIN) -> None:
        super().__init__()
        if width < 1 or n_blocks < 1:
            raise ValueError(f"encoder needs width >= 1 and n_blocks >= 1, got width={width}, n_blocks={n_blocks}")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7, bias=False),
                                   nn.InstanceNorm2d(width), nn.ReLU()]
        layers += _conv_norm_relu(width, 2 * width, 3, 2) + _conv_norm_relu(2 * width, 4 * width, 3, 2)
        layers += [ResnetBlock(4 * width) for _ in range(n_blocks)]
        self.layers = nn.ModuleList(layers)
        self.channels = [in_channels] + [width] * 3 + [2 * width] * 3 + [4 * width] * (3 + n_blocks)  # per layer
        self.out_channels = 4 * width
        self.feature_stride = 4
        self.n_blocks = n_blocks
        if init_gain is not None:
            init_cut_weights(self, init_gain)

    @property
    def nce_layers(self) -> tuple[int, ...]:
        """CUT's PatchNCE taps in this layer list: pad, conv s2 (2w), conv s2 (4w), block 1, block min(5, n_blocks)."""
        return tuple(sorted({0, 4, 7, 10, 9 + min(5, self.n_blocks)}))

    def forward_intermediates(self, x: Tensor, indices: Sequence[int], *,
                              stop_early: bool = False) -> tuple[Tensor, list[Tensor]]:
        """(the final output, the outputs of layers ``indices`` in the order given).

        With ``stop_early`` the layers after the deepest index are skipped (CUT's ``encode_only``) and the first
        element is that layer's output.
        """
        bad = [i for i in indices if not 0 <= i < len(self.layers)]
        if bad:
            raise ValueError(f"encoder layer indices {bad} out of range 0..{len(self.layers) - 1}")
        wanted = set(indices)
        last = max(indices) if stop_early and indices else len(self.layers) - 1
        taps: dict[int, Tensor] = {}
        for i, layer in enumerate(self.layers[: last + 1]):
            x = layer(x)
            if i in wanted:
                taps[i] = x
        return x, [taps[i] for i in indices]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_intermediates(x, [])[0]


class _Decoder(nn.Module):
    """``[u(2w)-s2-k7, u(w)-s2-k3, c(out)-s1-k7]``: (B, 4w, h, w) -> (B, out, 4h, 4w), no activation at the end."""

    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 7, stride=2, padding=3, output_padding=1, bias=False),
            nn.InstanceNorm2d(2 * width), nn.ReLU())
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.InstanceNorm2d(width), nn.ReLU())
        self.out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7))

    def forward_intermediates(self, h: Tensor) -> list[Tensor]:
        """[up1 (2w, 2h), up2 (w, 4h), output before its activation (out, 4h)]."""
        u1 = self.up1(h)
        u2 = self.up2(u1)
        return [u1, u2, self.out(u2)]

    def forward(self, h: Tensor) -> Tensor:
        return self.forward_intermediates(h)[-1]


class ContentGenerator(_Decoder):
    """G_C: h -> n RGB content maps (B, n, 3, H, W) in [-1, 1] (tanh)."""

    def __init__(self, *, width: int = 64, n_content: int = NUM_CONTENT) -> None:
        super().__init__(width, 3 * n_content)
        self.n_content = n_content

    def forward(self, h: Tensor) -> Tensor:
        c = torch.tanh(super().forward(h))  # (B, 3n, H, W)
        return c.view(c.shape[0], self.n_content, 3, *c.shape[2:])  # (B, n, 3, H, W), map t = channels 3t..3t+2


class AttentionGenerator(_Decoder):
    """G_A: h -> n + 1 attention masks (B, n + 1, H, W), a softmax over the masks (they sum to 1 per pixel)."""

    def __init__(self, *, width: int = 64, n_content: int = NUM_CONTENT) -> None:
        super().__init__(width, n_content + 1)

    def forward(self, h: Tensor) -> Tensor:
        return torch.softmax(super().forward(h), dim=1)


def compose(x: Tensor, content: Tensor, attention: Tensor) -> Tensor:
    """``G(x) = sum_t C_t * A_t + x * A_{n+1}``.

    Args:
        x: (B, 3, H, W) the input image.
        content: (B, n, 3, H, W) content maps C_1..C_n.
        attention: (B, n + 1, H, W) masks A_1..A_{n+1}; the last one weighs the input (background).
    """
    n = content.shape[1]
    if attention.shape[1] != n + 1 or attention.shape[2:] != x.shape[2:] or content.shape[2:] != x.shape[1:]:
        raise ValueError(f"compose needs x (B, 3, H, W), content (B, n, 3, H, W), attention (B, n + 1, H, W); got "
                         f"{tuple(x.shape)}, {tuple(content.shape)}, {tuple(attention.shape)}")
    foreground = (content * attention[:, :n, None]).sum(dim=1)  # (B, n, 3, H, W) * (B, n, 1, H, W) -> (B, 3, H, W)
    return foreground + x * attention[:, n:]  # (B, 3, H, W) * (B, 1, H, W)


@dataclass
class Translation:
    """G(x) and its parts: ``image`` (B, 3, H, W), ``content`` (B, n, 3, H, W), ``attention`` (B, n + 1, H, W)."""

    image: Tensor
    content: Tensor
    attention: Tensor


def lg_features(encoder: ResnetEncoder, attention: AttentionGenerator, x: Tensor) -> list[Tensor]:
    """The 4 local-global layers on ``x`` (B, 3, H, W), in the order of the weights 1.0, 0.7, 0.4, 0.1:
    E_B c(4w)-s2 (B, 4w, H/4, W/4), G_A u(2w) (B, 2w, H/2, W/2), G_A u(w) (B, w, H, W), G_A logits (B, n + 1, H, W).
    Takes the modules, so the momentum copies of E_B and G_A use it too."""
    h, (e,) = encoder.forward_intermediates(x, [encoder.lg_layer])
    return [e, *attention.forward_intermediates(h)]


class AttentionTranslator(nn.Module):
    """G = (E_B, G_C, G_A) with the attention composition; (B, 3, H, W) -> (B, 3, H, W), H and W divisible by 4.

    Args:
        width: w (CUT's ngf = 64; 16 for ShapesWorld on a CPU).
        n_blocks: residual blocks of E_B (9; 4 for ShapesWorld on a CPU).
        n_content: n content maps (9), hence n + 1 attention masks.
        init_gain: Xavier gain of every layer; None keeps PyTorch's default init.
    """

    def __init__(self, *, width: int = 64, n_blocks: int = 9, n_content: int = NUM_CONTENT,
                 init_gain: float | None = INIT_GAIN) -> None:
        super().__init__()
        if n_content < 1:
            raise ValueError(f"n_content must be >= 1, got {n_content}")
        self.encoder = ResnetEncoder(width=width, n_blocks=n_blocks, init_gain=None)
        self.content = ContentGenerator(width=width, n_content=n_content)
        self.attention = AttentionGenerator(width=width, n_content=n_content)
        self.lg_channels = (4 * width, 2 * width, width, n_content + 1)  # of lg_features
        if init_gain is not None:
            init_cut_weights(self, init_gain)

    def translate(self, x: Tensor) -> Translation:
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"the translator needs H and W divisible by 4, got {tuple(x.shape[2:])}")
        h = self.encoder(x)
        content, attention = self.content(h), self.attention(h)
        return Translation(image=compose(x, content, attention), content=content, attention=attention)

    def forward(self, x: Tensor) -> Tensor:
        return self.translate(x).image

    def lg_features(self, x: Tensor) -> list[Tensor]:
        return lg_features(self.encoder, self.attention, x)


class ResnetGenerator(nn.Module):
    """CUT's plain generator (no attention): E_B, then ``[u(2w)-s2-k7, u(w)-s2-k3, c3-s1-k7, tanh]``.

    The CUT baseline and LGCL's "no G_A" ablation. The encoder is the same :class:`ResnetEncoder` as the attention
    translator's, so PatchNCE taps the same layers; the decoder is :class:`AttentionTranslator`'s G_C with one RGB
    output instead of n content maps (CUT's ``resnet_9blocks`` with a plain stride-2 encoder, see the module
    docstring). (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1], H and W divisible by 4.

    Args:
        width: w (CUT's ngf = 64).
        n_blocks: residual blocks of E_B (9).
        init_gain: Xavier gain of every layer; None keeps PyTorch's default init.
    """

    def __init__(self, *, width: int = 64, n_blocks: int = 9, init_gain: float | None = INIT_GAIN) -> None:
        super().__init__()
        self.encoder = ResnetEncoder(width=width, n_blocks=n_blocks, init_gain=None)
        self.decoder = _Decoder(width, 3)
        if init_gain is not None:
            init_cut_weights(self, init_gain)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"the generator needs H and W divisible by 4, got {tuple(x.shape[2:])}")
        return torch.tanh(self.decoder(self.encoder(x)))


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN: (B, 3, H, W) -> (B, 1, h, w) raw scores (LSGAN has no sigmoid).

    ``c(w)-s2-k4, LReLU | c(2w)-s2-k4, IN, LReLU | c(4w)-s2-k4, IN, LReLU | c(8w)-s1-k4, IN, LReLU | c1-s1-k4`` for
    ``n_layers=3`` (LGCL's table prints the four feature convs); padding 1, LeakyReLU slope 0.2. Each score sees a
    70 x 70 input window; h = H/8 - 2 for H divisible by 8. The stride-2 convs are plain, as in pix2pix and the
    table (CUT's default blurs before subsampling).
    """

    def __init__(self, *, width: int = 64, n_layers: int = 3, in_channels: int = 3,
                 init_gain: float | None = INIT_GAIN) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        cout = width
        for n in range(1, n_layers + 1):
            cin, cout = cout, width * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=False), nn.InstanceNorm2d(cout),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(cout, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        if init_gain is not None:
            init_cut_weights(self, init_gain)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ProjectionHead(nn.Module):
    """``Linear(C, hidden)-ReLU-Linear(hidden, dim)``, L2-normalised: (..., C) -> (..., dim)."""

    def __init__(self, in_features: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return l2_normalize(self.mlp(x))


def patch_heads(in_channels: Sequence[int], *, dim: int = PATCH_HEAD_DIM,
                init_gain: float | None = INIT_GAIN) -> nn.ModuleList:
    """CUT's ``PatchSampleF`` MLPs: one ProjectionHead(C_l, dim, dim) per tapped layer l (``heads[l]``)."""
    heads = nn.ModuleList([ProjectionHead(c, dim, dim) for c in in_channels])
    if init_gain is not None:
        init_cut_weights(heads, init_gain)
    return heads


class LocalGlobalHeads(nn.Module):
    """The global and local heads of the local-global loss, one pair per layer of :func:`lg_features`.

    Args:
        in_channels: channels of each layer (``AttentionTranslator.lg_channels``).
        cells: local patches per view (4 x 4).
        hidden: hidden units of each head.
        dim: embedding size.
        init_gain: Xavier gain; None keeps PyTorch's default init.
    """

    def __init__(self, *, in_channels: Sequence[int], cells: int = LG_CELLS, hidden: int = LG_HIDDEN,
                 dim: int = LG_DIM, init_gain: float | None = INIT_GAIN) -> None:
        super().__init__()
        self.cells = cells
        self.global_heads = nn.ModuleList([ProjectionHead(c, hidden, dim) for c in in_channels])
        self.local_heads = nn.ModuleList([ProjectionHead(cells * c, hidden, dim) for c in in_channels])
        if init_gain is not None:
            init_cut_weights(self, init_gain)

    def embed_global(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Per layer: (B, C, h, w) -> average pool -> global head -> (B, dim), unit norm."""
        self._check(feats)
        return [head(f.mean(dim=(2, 3))) for head, f in zip(self.global_heads, feats)]

    def embed_local(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Per layer: (B * cells, C, h, w), patch j of image b at row b * cells + j (the shuffled order) -> average
        pool -> the cells' vectors concatenated in that order (B, cells * C) -> local head -> (B, dim), unit norm."""
        self._check(feats)
        out = []
        for head, f in zip(self.local_heads, feats):
            if f.shape[0] % self.cells:
                raise ValueError(f"local features need B * {self.cells} rows, got {f.shape[0]}")
            pooled = f.mean(dim=(2, 3))  # (B * cells, C)
            out.append(head(pooled.reshape(-1, self.cells * f.shape[1])))  # (B, cells * C), row b = its cells
        return out

    def _check(self, feats: Sequence[Tensor]) -> None:
        if len(feats) != len(self.global_heads):
            raise ValueError(f"expected {len(self.global_heads)} feature maps, got {len(feats)}")
