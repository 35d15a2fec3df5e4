"""Frozen networks (:class:`lowlabel.methods.base.Frozen`): prepared, merged with the trained ones, recorded.

The engine trains ``method.networks()`` and hands the method ``{**trained, **frozen}``. Frozen modules
have ``requires_grad`` off and stay in eval mode; they are never optimised or checkpointed (rebuilding the
method reloads them from their ``source``). ``<run>/frozen.json`` records where each came from::

    {"teacher": {"source": "runs/cam/0/checkpoints/best.ckpt", "sha256": "9f2c...", "parameters": 11689512}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lowlabel.methods.base import Frozen

RECORD = "frozen.json"


def frozen_networks(method: Any) -> dict[str, Frozen]:
    """``method.frozen_networks()`` (empty without the member), each module with ``requires_grad`` off, in eval mode."""
    make = getattr(method, "frozen_networks", None)
    frozen = dict(make()) if make is not None else {}
    for name, item in frozen.items():
        if not isinstance(item, Frozen):
            raise TypeError(f"{method.name}.frozen_networks()[{name!r}] must be a Frozen, got {type(item).__name__}")
        item.module.requires_grad_(False)
        item.module.eval()
    return frozen


def merge_nets(trained: Mapping[str, nn.Module], frozen: Mapping[str, Frozen]) -> dict[str, nn.Module]:
    """``{**trained, **frozen modules}``, the mapping the method's members take; a shared name is a ValueError."""
    shared = [name for name in frozen if name in trained]
    if shared:
        raise ValueError(f"network name(s) {shared} are used by both networks() and frozen_networks()")
    return {**trained, **{name: item.module for name, item in frozen.items()}}


def keep_in_eval(frozen: Mapping[str, Frozen]) -> None:
    """Put every frozen module back in eval mode (method code may have called ``.train()`` on it)."""
    for item in frozen.values():
        item.module.eval()


def frozen_record(frozen: Mapping[str, Frozen]) -> dict[str, dict[str, Any]]:
    """What ``frozen.json`` holds: ``{name: {"source", "sha256", "parameters"}}`` (parameters = element count)."""
    return {
        name: {"source": item.source, "sha256": item.sha256,
               "parameters": sum(p.numel() for p in item.module.parameters())}
        for name, item in frozen.items()
    }


def read_record(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``<run_dir>/frozen.json``, empty if there is none."""
    path = Path(run_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def changed_warnings(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One warning line per frozen network whose SHA-256 differs from the one recorded when the run began."""
    lines = []
    for name, now in new.items():
        before = old.get(name)
        if before is not None and before.get("sha256") != now["sha256"]:
            source = now["source"] or "(no file)"
            lines.append(f"warning: frozen network {name!r} changed since the run was started: {source} has sha256 "
                         f"{now['sha256'] or '(none)'}, the run recorded {before.get('sha256') or '(none)'}")
    return lines
