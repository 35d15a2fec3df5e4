"""CUT: contrastive unpaired translation, the baseline of LGCL (``lowlabel train cut``).

Park, Efros, Zhang and Zhu, "Contrastive Learning for Unpaired Image-to-Image Translation", ECCV 2020. A plain
ResNet generator (``lowlabel.models.lgcl_nets.ResnetGenerator``) trained with the LSGAN loss and multi-layer
PatchNCE (with the identity term: CUT mode), in the same harness, data, budget and evaluation as LGCL
(:mod:`lowlabel.methods.cross_domain.translation`). It is also the paper's "no G_A" ablation row.
"""

from __future__ import annotations

from dataclasses import dataclass

from lowlabel.methods.cross_domain.translation import TranslationConfig, Translator


@dataclass
class CUTConfig(TranslationConfig):
    """Everything ``lowlabel train cut`` reads (the harness's settings; CUT adds none)."""


CONFIG = CUTConfig


def build(cfg: CUTConfig) -> Translator:
    return Translator(name="cut", config=cfg, generator="plain")
