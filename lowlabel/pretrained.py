"""Weights out and in: ``save_pretrained`` writes ``model.safetensors`` + ``config.json``; ``from_pretrained``
rebuilds the method from them, offline.

``model.safetensors`` keys are ``<network>/<parameter name>`` (``model/backbone.conv1.weight``);
``config.json`` is ``{"format": "lowlabel-pretrained", "version": 1, "method": name, "config": {...},
"networks": [...], "lowlabel_version": ...}``. Pickled ``.pth`` files (authors' checkpoints) are only
read with ``trust_pickle=True``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lowlabel.engine.frozen import frozen_networks, merge_nets
from lowlabel.engine.run import LoadedMethod
from lowlabel.errors import UserError
from lowlabel.models.weights import (
    PRETRAINED_CONFIG,
    PRETRAINED_FORMAT,
    PRETRAINED_WEIGHTS,
    load_nets,
    load_weights,
    read_weights,
)

__all__ = [
    "backbone_state", "export_backbone", "from_pretrained", "load", "load_weights", "read_weights", "save_pretrained",
]

FORMAT = PRETRAINED_FORMAT
WEIGHTS = PRETRAINED_WEIGHTS
CONFIG = PRETRAINED_CONFIG


def save_pretrained(method_or_nets: Any, out_dir: str | Path, *, nets: Mapping[str, nn.Module] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json``.

    Args:
        method_or_nets: a method (its ``name``, ``config`` and networks are saved) or a mapping of
            network name -> module (weights only; ``from_pretrained`` then needs the method and config).
        out_dir: folder to create.
        nets: the method's networks, if already obtained (``method.networks()`` is called otherwise).
        extra: more keys for ``config.json`` (``lowlabel export`` adds the source checkpoint and preprocessing).

    Returns:
        ``out_dir``.
    """
    from safetensors.torch import save_file

    from lowlabel import __version__
    from lowlabel.engine.config import config_to_dict

    if isinstance(method_or_nets, Mapping):
        method, modules = None, dict(method_or_nets)
    else:
        method, modules = method_or_nets, dict(nets if nets is not None else method_or_nets.networks())
    tensors = {}
    for name, net in modules.items():
        if "/" in name:
            raise ValueError(f"network name {name!r} must not contain '/'")
        for key, value in net.state_dict().items():
            tensors[f"{name}/{key}"] = value.detach().cpu().contiguous().clone()  # clone: no shared storage
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT, "version": 1, "lowlabel_version": __version__,
        "method": getattr(method, "name", None), "config": config_to_dict(method.config) if method else None,
        "networks": list(modules), **(extra or {}),
    }
    (out / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def from_pretrained(path: str | Path, *, method_name: str | None = None, config: Any = None) -> LoadedMethod:
    """Rebuild a method from a ``save_pretrained`` folder (offline) and load its weights.

    Args:
        path: the folder holding ``config.json`` and ``model.safetensors``.
        method_name: expected method (``UserError`` if the folder holds another); required when the
            folder was saved from bare networks.
        config: method config overriding the saved one (required for bare networks).
    """
    from lowlabel.engine.config import config_from_dict
    from lowlabel.methods import method_module

    folder = Path(path)
    meta_path = folder / CONFIG
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG}; not a save_pretrained folder")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path}: not a lowlabel pretrained config (format {meta.get('format')!r})")
    name = meta.get("method") or method_name
    if name is None:
        raise UserError(f"{meta_path}: saved from bare networks; pass method_name= and config=")
    if method_name is not None and name != method_name:
        raise UserError(f"{folder}: weights of method {name!r}, not {method_name!r}")
    module = method_module(name)
    if config is None:
        if meta.get("config") is None:
            raise UserError(f"{meta_path}: no saved config; pass config=")
        config = config_from_dict(module.CONFIG, meta["config"], source=str(meta_path))
    method = module.build(config)
    nets = dict(method.networks())
    load_nets(nets, load_weights(folder), source=folder / WEIGHTS)
    for net in nets.values():
        net.eval()
    frozen = frozen_networks(method)  # reloaded by the method from their own sources, never saved here
    return LoadedMethod(method=method, nets=merge_nets(nets, frozen), run_dir=None, ckpt_path=folder / WEIGHTS,
                        frozen=frozen)


def export_backbone(run_or_weights: str | Path, out_file: str | Path, *, trust_pickle: bool = False) -> Path:
    """Write the backbone of a run (folder, checkpoint or ``save_pretrained`` folder) as a plain ``.safetensors``
    state dict that ``model.pretrained`` and other code read (:func:`backbone_state` says which layout).

    Raises:
        FileNotFoundError, UserError: unreadable weights; ValueError: more than one network, or no backbone in it.
    """
    from safetensors.torch import save_file

    from lowlabel.models.weights import read_weights, single_network

    weights = read_weights(run_or_weights, trust_pickle=trust_pickle)
    tensors, layout = backbone_state(single_network(weights, weights.file), weights.file)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(out),
              metadata={"format": "lowlabel-backbone", "layout": layout, "source": str(weights.file)})
    return out


# Where torchvision's ResNet modules sit in the networks lowlabel builds (key prefix in the network -> torchvision's):
_RESNET_LAYOUTS: tuple[dict[str, str], ...] = (
    # a torchvision ResNet itself: classify's resnet18/34/50, DeepLabV3's backbone
    {"conv1.": "conv1.", "bn1.": "bn1.", "layer1.": "layer1.", "layer2.": "layer2.", "layer3.": "layer3.",
     "layer4.": "layer4."},
    # stem + four stages (models.backbones.CAMBackbone's resnet50, models.resnet_os16.StagedResNet)
    {"body.0.0.": "conv1.", "body.0.1.": "bn1.", "body.1.": "layer1.", "body.2.": "layer2.", "body.3.": "layer3.",
     "body.4.": "layer4."},
    # one Sequential (conv1, bn1, relu, maxpool, layer1..4): ContrastCorr's resnet18_os8
    {"body.0.": "conv1.", "body.1.": "bn1.", "body.4.": "layer1.", "body.5.": "layer2.", "body.6.": "layer3.",
     "body.7.": "layer4."},
)


def backbone_state(state: Mapping[str, Any], source: Path) -> tuple[dict[str, Any], str]:
    """The backbone of a network's state dict, and its key layout.

    * ``"torchvision"``: a ResNet (any of the :data:`_RESNET_LAYOUTS`, under any prefix) in torchvision's keys
      (``conv1.weight``, ``layer1.0.bn1.running_mean``, ..., no ``fc``), which timm's ResNets share: it loads into
      ``torchvision.models.resnet50()`` with ``strict=False`` (only ``fc.*`` missing). Changed strides (CAM's
      stride-1 stages) are architecture, not weights, so they are not in the file.
    * ``"lowlabel"``: ``resnet_small``'s ``backbone.body.*`` keys, which ``model.pretrained`` reads.

    Raises:
        ValueError: neither (another architecture), naming ``source``.
    """
    found = []
    for layout in _RESNET_LAYOUTS:
        conv1, bn1, *stages = layout
        for key, value in state.items():
            if not key.endswith(conv1 + "weight") or getattr(value, "ndim", 0) != 4:
                continue
            prefix = key[: -len(conv1 + "weight")]
            # a BatchNorm after the stem conv, and four stages of residual blocks (VGG's stages hold no conv1)
            if f"{prefix}{bn1}running_mean" in state and all(f"{prefix}{stage}0.conv1.weight" in state
                                                               for stage in stages):
                found.append((len(prefix), prefix, layout))
    if found:
        _, prefix, layout = min(found, key=lambda f: f[0])
        out = {}
        for key, value in state.items():
            src = next((s for s in layout if key.startswith(prefix + s)), None)
            if src is not None:
                out[layout[src] + key[len(prefix + src) :]] = value
        return out, "torchvision"
    marker = "backbone.body."
    body = {key[key.index(marker) :]: value for key, value in state.items() if marker in key}
    if any(key.startswith(f"{marker}1.conv1.") for key in body):  # resnet_small: one BasicBlock per stage
        return body, "lowlabel"
    raise ValueError(f"{source}: no ResNet backbone found (the backbone export knows torchvision ResNets and "
                     f"resnet_small)")


def load(path: str | Path, *, method_name: str | None = None, trust_pickle: bool = False) -> LoadedMethod:
    """A trained method from a run folder, a checkpoint file or a ``save_pretrained`` folder, in eval mode and ready
    for ``.predict(images)`` (``lowlabel.load`` is this function).

    Raises:
        FileNotFoundError: nothing at ``path``.
        UserError: a folder that is neither a run (``checkpoints/``) nor a ``save_pretrained`` folder, or weights of
            another method than ``method_name``.
    """
    from lowlabel.engine.run import load_method_from_run

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"lowlabel.load: {folder} does not exist")
    if folder.is_dir() and (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file():
        return from_pretrained(folder, method_name=method_name)
    if folder.is_dir() and not (folder / "checkpoints").is_dir():
        raise UserError(f"lowlabel.load: {folder} is not a run folder (no checkpoints/) nor a save_pretrained folder "
                        f"({CONFIG} + {WEIGHTS})")
    return load_method_from_run(folder, method_name=method_name, trust_pickle=trust_pickle)
