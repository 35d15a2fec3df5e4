"""LGCL: local-global contrastive learning of the attention in an unpaired translator (``lowlabel train lgcl``).

LGCL, BMVC 2024, arXiv:2410.05058 (Triantafyllidou, Parisot, Leonardis, McDonagh). The translator is attention-guided
(``lowlabel.models.lgcl_nets.AttentionTranslator``: E_B, G_C with n = 9 content maps, G_A with n + 1 softmax masks,
``G(x) = sum_t C_t * A_t + x * A_{n+1}``), trained with CUT's GAN and PatchNCE losses (the shared harness,
:mod:`lowlabel.methods.cross_domain.translation`) plus the local-global contrastive loss on G_A, which needs no
labels::

    x1, x2 = two augmented views of x (flip, Gaussian blur, colour jitter, grayscale; no crop)
    P1, P2 = per view, a random crop of >= 60 % of the area, cut into 4 x 4 cells, shuffled      (B * 16 patches)
    query branch (E_B, G_A) on x1 and on each patch of P1; key branch (momentum copies E_Bm, G_Am) on x2, P2
    per layer i of E_B c(4w)-s2, G_A u(2w), u(w), G_A logits (weights w_i = 1.0, 0.7, 0.4, 0.1):
        q_g = g_i(pool(f_i(x1))),   q_l = l_i(concat_j pool(f_i(P1_j))),   k_g, k_l likewise from the key branch
        L_gg = InfoNCE(q_g, k_g; global queue_i),  L_gl = InfoNCE(q_l, k_g; global queue_i),
        L_ll = InfoNCE(q_l, k_l; local queue_i)
    L_GA = sum_i w_i (L_gg + L_gl + L_ll);  L_G += lambda_lg * L_GA
    after the step: theta_m <- m theta_m + (1 - m) theta for E_B, G_A and the heads; enqueue k_g, k_l

The losses, queues, patches and heads are :mod:`lowlabel.losses.lgcl` and :mod:`lowlabel.models.lgcl_nets`, where
the paper's open points are decided (stem stride, layer-weight mapping, patch encoding, head sizes). Decided here:

* ``lambda_lg = 1``: the paper's total loss shows unit weights and gives no lambda.
* Queue size: MoCo's K = 65,536 for the real datasets; ``synth-full`` uses 4,096 (about 2 x the 2,000 training
  images; a queue much longer than the dataset would hold many stale copies of each image). tau = 0.2 and
  m = 0.999 (MoCo v2 / DetCo).
* View augmentations (MoCo v2's, without the crop, which the local patches supply): colour jitter (0.4, 0.4, 0.4,
  0.1) with p = 0.8, grayscale p = 0.2, Gaussian blur sigma in [0.1, 2] with p = 0.5 and a kernel of about 10 % of
  the shorter side, horizontal flip p = 0.5.
* The patch size is the image size / 4 (rounded down to a multiple of 4): the 16 patches tile a crop resized to the
  image's own size.

The paper's ablation rows are configs, not code: "G_A without L_GA" is ``--lg.weight 0``; "no G_A" is the plain CUT
generator with the same losses, ``lowlabel train cut``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchvision.transforms import v2

from lowlabel.losses.lgcl import (
    GRID,
    LG_LAYER_WEIGHTS,
    LG_MOMENTUM,
    LG_TAU,
    QUEUE_SIZE,
    NegativeQueue,
    ema_update,
    local_global_loss,
    local_patches,
    momentum_copy,
    sample_crop_boxes,
    sample_shuffles,
)
from lowlabel.methods.cross_domain.translation import TranslationConfig, Translator, plain
from lowlabel.models.lgcl_nets import LG_DIM, LG_HIDDEN, AttentionTranslator, LocalGlobalHeads, lg_features


@dataclass
class LocalGlobalConfig:
    """The local-global contrastive loss on G_A."""

    weight: float = 1.0  # lambda_lg (the paper: unit weights); 0 = "G_A without L_GA" (the paper's ablation)
    layer_weights: tuple[float, float, float, float] = LG_LAYER_WEIGHTS  # of lg_features' layers (see above)
    tau: float = LG_TAU
    momentum: float = LG_MOMENTUM
    queue_size: int = QUEUE_SIZE
    dim: int = LG_DIM
    hidden: int = LG_HIDDEN

    def __post_init__(self) -> None:
        if self.weight < 0 or self.tau <= 0 or not 0 <= self.momentum <= 1 or self.queue_size < 1:
            raise ValueError(f"lg needs weight >= 0, tau > 0, momentum in [0, 1] and queue_size >= 1, got {self}")


@dataclass
class LGCLConfig(TranslationConfig):
    """Everything ``lowlabel train lgcl`` reads."""

    lg: LocalGlobalConfig = field(default_factory=LocalGlobalConfig)


CONFIG = LGCLConfig


class LocalGlobal:
    """The local-global loss as an extension of the translation harness (``translation.GeneratorExtra``)."""

    def __init__(self, config: LocalGlobalConfig, translator: AttentionTranslator) -> None:
        self.config = config
        layers = len(translator.lg_channels)
        if len(config.layer_weights) != layers:
            raise ValueError(f"lg.layer_weights needs {layers} weights, got {config.layer_weights}")
        self.heads = LocalGlobalHeads(in_channels=translator.lg_channels, cells=GRID * GRID, hidden=config.hidden,
                                      dim=config.dim)
        # the key branch starts as a copy of the query branch (MoCo) and is never optimised
        self.momentum = nn.ModuleDict({"encoder": momentum_copy(translator.encoder),
                                       "attention": momentum_copy(translator.attention),
                                       "heads": momentum_copy(self.heads)})
        gen = torch.Generator().manual_seed(0)
        # queues 0..L-1: global keys of layer i; L..2L-1: local keys of layer i
        self.queues = nn.ModuleList([NegativeQueue(size=config.queue_size, dim=config.dim, generator=gen)
                                     for _ in range(2 * layers)])
        self.layers = layers
        self._keys: tuple[list[Tensor], list[Tensor]] | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"lg_heads": self.heads, "lg_momentum": self.momentum, "lg_queues": self.queues}

    def trainable(self) -> list[str]:
        return ["lg_heads"]

    def generator_loss(self, nets: Mapping[str, nn.Module], x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """lambda_lg * L_GA on target images ``x`` (B, 3, H, W) in [-1, 1]; keeps the keys for the queues."""
        if self.config.weight == 0:
            return x.new_zeros(()), {}
        b, _, h, w = x.shape
        patch_hw = (h // GRID // 4 * 4, w // GRID // 4 * 4)
        if min(patch_hw) < 4:
            raise ValueError(f"local patches need images of at least {GRID * 4} x {GRID * 4} px, got {h} x {w}")
        views = [augment_views(x) for _ in range(2)]  # x1, x2: (B, 3, H, W) each
        patches = [local_patches(v, sample_crop_boxes(b, h, w), sample_shuffles(b), patch_hw=patch_hw)
                   .flatten(0, 1) for v in views]  # (B * 16, 3, ph, pw) each, image b's cells at rows 16b..16b+15
        g, heads, m = plain(nets["G"]), plain(nets["lg_heads"]), plain(nets["lg_momentum"])
        q_global = heads.embed_global(lg_features(g.encoder, g.attention, views[0]))
        q_local = heads.embed_local(lg_features(g.encoder, g.attention, patches[0]))
        with torch.no_grad():
            k_global = m["heads"].embed_global(lg_features(m["encoder"], m["attention"], views[1]))
            k_local = m["heads"].embed_local(lg_features(m["encoder"], m["attention"], patches[1]))
        queues = plain(nets["lg_queues"])
        terms = local_global_loss(q_global, q_local, k_global, k_local,
                                  [queues[i]() for i in range(self.layers)],
                                  [queues[self.layers + i]() for i in range(self.layers)],
                                  weights=self.config.layer_weights, tau=self.config.tau)
        self._keys = (k_global, k_local)
        logs = {"loss_LG": float(terms.total.detach()), "loss_LG_gg": float(terms.gg.detach().mean()),
                "loss_LG_gl": float(terms.gl.detach().mean()), "loss_LG_ll": float(terms.ll.detach().mean())}
        return self.config.weight * terms.total, logs

    @torch.no_grad()
    def after_optimizer_step(self, nets: Mapping[str, nn.Module], step: int) -> None:
        """The momentum update of E_B, G_A and the heads, then this step's keys into the queues (all processes')."""
        if self.config.weight == 0:
            return
        g, m = plain(nets["G"]), plain(nets["lg_momentum"])
        ema_update(m["encoder"], g.encoder, self.config.momentum)
        ema_update(m["attention"], g.attention, self.config.momentum)
        ema_update(m["heads"], plain(nets["lg_heads"]), self.config.momentum)
        if self._keys is None:
            return
        k_global, k_local = self._keys
        queues = plain(nets["lg_queues"])
        for i in range(self.layers):
            queues[i].enqueue(gather(k_global[i]))
            queues[self.layers + i].enqueue(gather(k_local[i]))
        self._keys = None


def gather(keys: Tensor) -> Tensor:
    """``keys`` of every process concatenated (MoCo's ``concat_all_gather``); itself in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys
    parts = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, keys.contiguous())
    return torch.cat(parts)


def augment_views(x: Tensor) -> Tensor:
    """One augmented global view of each image of ``x`` (B, 3, H, W) in [-1, 1] (module docstring), in [-1, 1]."""
    h = x.shape[-2]
    kernel = max(3, int(0.1 * h) // 2 * 2 + 1)  # odd, ~10 % of the shorter side (MoCo v2: 23 at 224)
    transform = v2.Compose([
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        v2.RandomHorizontalFlip(p=0.5),
    ])
    unit = (x.detach() + 1) / 2  # (B, 3, H, W) in [0, 1]: the colour transforms' range
    return torch.stack([transform(img) for img in unit]) * 2 - 1  # one draw per image


def build(cfg: LGCLConfig) -> Translator:
    return Translator(name="lgcl", config=cfg, generator="attention",
                      extra_factory=lambda translator: LocalGlobal(cfg.lg, translator))
