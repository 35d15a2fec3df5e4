"""The methods, by CLI name.

Each value names a module that exposes ``CONFIG`` (its config dataclass, which has a
``trainer: TrainerConfig`` field and an ``optim: OptimConfig`` field unless the method defines
``optim_configs()``) and ``build(cfg) -> Method``
(see :mod:`lowlabel.methods.base`). Modules are imported lazily so that ``lowlabel --help``
stays fast. Add a method with one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS: dict[str, str] = {
    "cam": "lowlabel.methods.wsol.cam",
    "da_wsol": "lowlabel.methods.wsol.da_wsol",
    "mlcam": "lowlabel.methods.wsss.mlcam",
    "sipe": "lowlabel.methods.wsss.sipe",
    "seg": "lowlabel.methods.wsss.seg",
    "classify": "lowlabel.methods.classification.classify",
    "contrastcorr_ae": "lowlabel.methods.correspondence.colour_ae",
    "contrastcorr": "lowlabel.methods.correspondence.contrastcorr",
    "detector": "lowlabel.methods.cross_domain.detector",
    "cut": "lowlabel.methods.cross_domain.cut",
    "lgcl": "lowlabel.methods.cross_domain.lgcl",
    "clip": "lowlabel.methods.open_vocab.clip",
    "regionclip": "lowlabel.methods.open_vocab.regionclip",
    "ovd": "lowlabel.methods.open_vocab.ovd",
}

# One line per method for `lowlabel train --help` (kept here so that --help imports no method).
SUMMARIES: dict[str, str] = {
    "cam": "vanilla CAM (WSOL baseline): image labels -> heat maps -> boxes",
    "da_wsol": "DA-WSOL (CVPR'22): CAM + target sample assigner, MMD and Universum losses",
    "mlcam": "multi-label CAM (WSSS baseline): seeds at the best background threshold",
    "sipe": "SIPE (CVPR'22): image-specific prototypes, IS-CAM seeds and pseudo masks",
    "seg": "segmentation stage: DeepLabV3 trained on a folder of pseudo masks",
    "classify": "image classification on an ImageNet-layout folder: the pretrained backbones (synth:pretrain)",
    "contrastcorr_ae": "ContrastCorr's first stage: the colour autoencoder, trained on unlabeled video frames",
    "contrastcorr": "ContrastCorr (AAAI'21): self-supervised correspondence from video, scored by mask propagation",
    "detector": "source-only Faster R-CNN (C4) on labelled source images: the frozen detector of cut and lgcl",
    "cut": "CUT (ECCV'20): unpaired target -> source translation with PatchNCE (LGCL's baseline)",
    "lgcl": "LGCL (BMVC'24): attention-guided translation with a local-global contrastive loss, for detection",
    "clip": "CLIP (ICML'21) from scratch on image-caption pairs: RegionCLIP's teacher, scored zero-shot",
    "regionclip": "RegionCLIP (CVPR'22): region-text pretraining of a CLIP student from a frozen teacher and captions",
    "ovd": "RegionCLIP's open-vocabulary detection transfer (frozen text classifier) and zero-shot region inference",
}


def method_module(name: str) -> ModuleType:
    """The module of method ``name``; ``ValueError`` naming the known methods if it is unknown."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return importlib.import_module(METHODS[name])
