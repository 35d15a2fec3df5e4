"""Metrics pinned to the official scorers' semantics (DESIGN.md section 5): pure functions and streaming evaluators.

Modules: :mod:`~lowlabel.metrics.wsol` (MaxBoxAcc V1/V2, GT-known/Top-1 Loc, Top-1 Cls, PxAP),
:mod:`~lowlabel.metrics.semseg` (confusion, mIoU, background threshold), :mod:`~lowlabel.metrics.davis` (J&F),
:mod:`~lowlabel.metrics.coco` (box AP through faster-coco-eval), :mod:`~lowlabel.metrics.corloc`,
:mod:`~lowlabel.metrics.voc_ap`. :mod:`~lowlabel.metrics.files` reads the official file formats and
:mod:`~lowlabel.metrics.scoring` scores whole folders (the library side of ``lowlabel score``).
Evaluators do no I/O and never print; no module imports torch, the engine, methods or the CLI.
"""
