"""The methods, by CLI name.

Each value names a module that exposes ``CONFIG`` (its config dataclass, which has a
``trainer: TrainerConfig`` and an ``optim: OptimConfig`` field) and ``build(cfg) -> Method``
(see :mod:`lowlabel.methods.base`). Modules are imported lazily so that ``lowlabel --help``
stays fast. Add a method with one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

METHODS: dict[str, str] = {
    "sipe": "lowlabel.methods.sipe",
    "mlcam": "lowlabel.methods.mlcam",
    "seg": "lowlabel.methods.seg",
    "cam": "lowlabel.methods.cam",
    "da_wsol": "lowlabel.methods.da_wsol",
}


def method_module(name: str) -> ModuleType:
    """The module of method ``name``; ``ValueError`` naming the known methods if it is unknown."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return importlib.import_module(METHODS[name])
