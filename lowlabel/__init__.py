"""lowlabel: label-efficient visual localization on shared parts.

    import lowlabel
    model = lowlabel.load("runs/da_wsol/2026-12-04_10-00-00")     # a run folder, checkpoint or save_pretrained folder
    predictions = model.predict([image])                          # PIL images, HxWx3 uint8 arrays or 3xHxW tensors
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(path: Any, **kwargs: Any) -> Any:
    """:func:`lowlabel.pretrained.load`: a trained method ready for ``.predict(images)`` (imported on first use, so
    ``import lowlabel`` stays light)."""
    from lowlabel.pretrained import load as _load  # the package facade: the one upward import (tests/test_layers.py)

    return _load(path, **kwargs)


__all__ = ["__version__", "load"]
