"""Using finished runs: rebuild a method from a run folder or checkpoint, evaluate it, predict with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowlabel.engine.config import config_from_dict, load_config_file
from lowlabel.engine.frozen import frozen_networks, merge_nets
from lowlabel.engine.logging import write_metrics
from lowlabel.errors import UserError
from lowlabel.methods.base import EvalResult, Frozen
from lowlabel.models.weights import CHECKPOINT_FORMAT, load_checkpoint, load_nets, run_checkpoint, unwrap_state_dict


@dataclasses.dataclass
class LoadedMethod:
    """A rebuilt method with its networks holding trained weights.

    Attributes:
        method: the object ``build(cfg)`` returned.
        nets: ``method.networks()``, weights loaded, plus the frozen networks, all in eval mode: the mapping
            ``evaluate`` / ``predict`` take.
        run_dir: the run folder the weights came from (None for a loose checkpoint file).
        ckpt_path: the checkpoint file read.
        step: the training step of the checkpoint (None if unknown).
        frozen: ``method.frozen_networks()`` (reloaded by the method from their sources; also in ``nets``).
    """

    method: Any
    nets: dict[str, nn.Module]
    run_dir: Path | None
    ckpt_path: Path
    step: int | None = None
    frozen: dict[str, Frozen] = dataclasses.field(default_factory=dict)

    def predict(self, images: Any) -> Any:
        """The method's ``predict_batch`` on ``images``: a list (or one) of PIL images, (H, W, 3) uint8 arrays or
        (3, H, W) uint8 tensors; returns the typed predictions (one, for one image), without gradients."""
        from lowlabel.models.modes import eval_mode

        single = not isinstance(images, (list, tuple))
        batch = [_as_image_tensor(img) for img in ([images] if single else images)]
        predict_batch = getattr(self.method, "predict_batch", None)
        if predict_batch is None:
            raise UserError(f"method {self.method.name!r} has no predict_batch")
        with eval_mode(self.nets.values()):
            out = predict_batch(self.nets, batch)
        return out[0] if single else out


def _as_image_tensor(image: Any) -> torch.Tensor:
    """A (3, H, W) uint8 tensor from a PIL image, an (H, W, 3) uint8 array or a (3, H, W) uint8 tensor."""
    import numpy as np

    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(f"predict: an array image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)  # PIL's arrays are read-only
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise UserError(f"predict: a tensor image must be (3, H, W) uint8, got {image.dtype} {tuple(image.shape)}")
        return image
    raise UserError(f"predict: unsupported image type {type(image).__name__} (PIL image, numpy array or tensor)")


def find_checkpoint(run_or_ckpt: str | Path) -> tuple[Path, Path | None]:
    """``(checkpoint file, run folder or None)`` for a run folder (best, else last) or a checkpoint path."""
    path = Path(run_or_ckpt)
    if path.is_dir():
        return run_checkpoint(path), path
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint or run folder not found: {path}")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" and \
        (path.parent.parent / "config.yaml").is_file() else None
    return path, run_dir


def load_method_from_run(
    run_or_ckpt: str | Path, *, method_name: str | None = None, trust_pickle: bool = False,
    config: Any = None,
) -> LoadedMethod:
    """Rebuild a method from a run folder (``config.yaml`` + best/last checkpoint) or a checkpoint file.

    Args:
        run_or_ckpt: a run folder or a ``.ckpt`` file written by :func:`lowlabel.engine.fit`; or, with
            ``config`` given, a foreign weight file (``.pth``) holding a state dict.
        method_name: expected method; a checkpoint of another method raises ``UserError``.
        trust_pickle: allow unpickling arbitrary objects (authors' ``.pth`` files).
        config: the method config to build with, for foreign weight files without one.
    """
    from lowlabel.methods import method_module

    ckpt_path, run_dir = find_checkpoint(run_or_ckpt)
    ckpt = load_checkpoint(ckpt_path, trust_pickle=trust_pickle)
    ours = isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT
    if not ours:
        return _load_foreign(ckpt, ckpt_path, method_name=method_name, config=config)
    name = ckpt["method"]
    if method_name is not None and name != method_name:
        raise UserError(f"{ckpt_path}: this is a checkpoint of method {name!r}, not {method_name!r}")
    module = method_module(name)
    if config is None:
        if run_dir is not None:
            config = load_config_file(module.CONFIG, run_dir / "config.yaml")
        else:
            config = config_from_dict(module.CONFIG, ckpt["config"], source=f"{ckpt_path} (embedded config)")
    method = module.build(config)
    nets = dict(method.networks())
    load_nets(nets, ckpt["nets"], source=ckpt_path)
    if ckpt.get("method_state") is not None and hasattr(method, "load_state_dict"):
        method.load_state_dict(ckpt["method_state"])
    for net in nets.values():
        net.eval()
    frozen = frozen_networks(method)
    return LoadedMethod(method=method, nets=merge_nets(nets, frozen), run_dir=run_dir, ckpt_path=ckpt_path,
                        step=ckpt.get("step"), frozen=frozen)


def _load_foreign(state: Any, path: Path, *, method_name: str | None, config: Any) -> LoadedMethod:
    """Weights from another codebase: a (possibly wrapped) state dict for a single-network method."""
    from lowlabel.methods import method_module

    if method_name is None or config is None:
        raise UserError(f"{path}: not a lowlabel checkpoint; give the method and its --config to load foreign weights")
    method = method_module(method_name).build(config)
    nets = dict(method.networks())
    state = unwrap_state_dict(state, path)
    loader = getattr(method, "load_foreign_weights", None)
    if loader is not None:
        loader(nets, state, source=path)
    elif len(nets) == 1:
        net = next(iter(nets.values()))
        result = net.load_state_dict(state, strict=False)
        if len(result.missing_keys) == len(net.state_dict()):
            raise UserError(f"{path}: none of its keys match network {next(iter(nets))!r}")
    else:
        raise UserError(f"{path}: method {method_name!r} has several networks and no load_foreign_weights()")
    for net in nets.values():
        net.eval()
    frozen = frozen_networks(method)
    return LoadedMethod(method=method, nets=merge_nets(nets, frozen), run_dir=None, ckpt_path=path, frozen=frozen)


def evaluate_run(
    run_or_ckpt: str | Path, *, split: str = "test", method_name: str | None = None, trust_pickle: bool = False,
    config: Any = None, out_dir: str | Path | None = None,
) -> tuple[EvalResult, Path]:
    """Evaluate a trained run on ``split``.

    Writes ``eval/<split>/`` (per-image scores and samples, by the method) and ``metrics.json``
    (flat metric keys plus ``step`` and ``split``) into the run folder, or next to a loose
    checkpoint file, or into ``out_dir`` if given.

    Returns:
        ``(result, folder written to)``.
    """
    from lowlabel.engine.loop import evaluate_nets

    loaded = load_method_from_run(run_or_ckpt, method_name=method_name, trust_pickle=trust_pickle, config=config)
    base = Path(out_dir) if out_dir is not None else (loaded.run_dir or loaded.ckpt_path.parent)
    result = evaluate_nets(loaded.method, loaded.nets, split=split, out_dir=base / "eval" / split)
    write_metrics(base, result, step=loaded.step, split=split)
    return result, base
