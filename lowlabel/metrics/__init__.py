"""Metrics pinned to the official scorers' semantics (DESIGN.md section 5): pure functions and streaming evaluators.

Modules: :mod:`~lowlabel.metrics.wsol` (MaxBoxAcc, GT-known/Top-1 Loc, PxAP), :mod:`~lowlabel.metrics.semseg`
(confusion, mIoU, background threshold), :mod:`~lowlabel.metrics.davis` (J&F), :mod:`~lowlabel.metrics.coco`
(box AP through faster-coco-eval), :mod:`~lowlabel.metrics.corloc`, :mod:`~lowlabel.metrics.voc_ap`.
No module here imports torch at import time, performs I/O in an evaluator, or prints.
"""
