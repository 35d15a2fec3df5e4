"""Reading weight files, in every format lowlabel meets, with one-line errors naming the file.

* lowlabel checkpoints (``<run>/checkpoints/{best,last}.ckpt``, written by :mod:`lowlabel.engine`) and run folders;
* ``save_pretrained`` folders (``model.safetensors`` with ``<network>/<parameter>`` keys + ``config.json``);
* bare ``.safetensors`` files and authors' ``.pth`` state dicts, optionally wrapped (``{"state_dict": ...}``) and
  with DDP's ``module.`` prefix; torchvision-layout backbone weights;
* TorchScript archives (OpenAI's CLIP ``.pt`` files): their state dict.

Files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused unless
``trust_pickle`` is given. Nothing here imports the engine or the methods, so models, methods (``init_from``) and
the engine all read weights through this one module.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowlabel.data.io import file_sha256
from lowlabel.errors import UserError

CHECKPOINT_FORMAT = "lowlabel-checkpoint"  # the "format" key of an engine checkpoint
PRETRAINED_FORMAT = "lowlabel-pretrained"  # the "format" key of a save_pretrained config.json
PRETRAINED_WEIGHTS = "model.safetensors"
PRETRAINED_CONFIG = "config.json"
RUN_CHECKPOINTS = ("best.ckpt", "last.ckpt")  # the file a run folder stands for, in order of preference


def _torch_load(path: Path, *, weights_only: bool) -> Any:
    """``torch.load`` onto the CPU; the library's warnings are shown only when the load succeeds.

    A refused file (``weights_only``) becomes one error line of ours: torch's "Detected pickle protocol"
    warning, printed before the refusal, would only add lines that say nothing the error does not.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return state


def load_checkpoint(path: Path, *, trust_pickle: bool = False) -> Any:
    """Load a checkpoint onto the CPU.

    Without ``trust_pickle`` only tensors and plain Python containers are accepted
    (``torch.load(weights_only=True)``); files that need arbitrary unpickling (many authors' ``.pth``
    files) are refused with a one-line hint.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UserError: the file is not a readable checkpoint, or needs ``--trust-pickle``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if is_torchscript(path):
        return _torchscript_state(path)
    try:
        return _torch_load(path, weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        if trust_pickle:
            raise UserError(f"{path}: cannot unpickle checkpoint ({str(err).splitlines()[0]})") from err
        raise UserError(
            f"{path}: contains pickled Python objects, which can run arbitrary code when loaded; "
            "pass --trust-pickle (trust_pickle=True) only if you trust where the file came from"
        ) from err
    except (RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable checkpoint ({first})") from err


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``; OpenAI's CLIP ``.pt`` files): a zip with ``<name>/code/`` entries,
    which ``torch.save`` archives never have."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, on the CPU.

    Loading one compiles its TorchScript code but unpickles no Python object, so ``trust_pickle`` does not apply.
    torch's deprecation warnings for ``torch.jit`` are not shown: reading a published file is not a use of the
    deprecated API the warning is about.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"{path}: not a readable TorchScript archive ({first})") from err
    return dict(module.state_dict())


def unwrap_state_dict(state: Any, path: Path) -> Mapping[str, Any]:
    """The state dict inside an authors' checkpoint (``{"state_dict"|"model"|"net": ...}`` or bare), with any
    DDP ``module.`` prefix removed from its keys; ``UserError`` naming ``path`` when there is none."""
    if isinstance(state, Mapping):
        for key in ("state_dict", "model", "net"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise UserError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


@dataclass
class Weights:
    """What :func:`read_weights` found.

    Attributes:
        nets: ``{network name: state dict}``; a bare state dict comes back under the name ``""``.
        file: the file that was read (a run folder's checkpoint, a pretrained folder's ``model.safetensors``).
        method: the method that wrote it (lowlabel checkpoints and pretrained folders), else None.
        config: that method's config as a plain dict, else None.
        run_dir: the run folder, when ``file`` is a run's checkpoint.
    """

    nets: dict[str, dict[str, torch.Tensor]]
    file: Path
    method: str | None = None
    config: dict[str, Any] | None = None
    run_dir: Path | None = None

    def sha256(self) -> str:
        """The SHA-256 of :attr:`file` (hex), recorded in run folders next to the file name."""
        return file_sha256(self.file)


def run_checkpoint(run_dir: Path) -> Path:
    """``<run_dir>/checkpoints/best.ckpt``, else ``last.ckpt``; ``FileNotFoundError`` naming the folder."""
    for name in RUN_CHECKPOINTS:
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise FileNotFoundError(f"{run_dir}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this run folder")


def read_weights(path: str | Path, *, trust_pickle: bool = False) -> Weights:
    """Every network's weights in a run folder, checkpoint, pretrained folder, ``.safetensors`` or ``.pth`` file.

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder that is neither a run nor a pretrained folder.
        UserError: an unreadable file, or one that needs ``trust_pickle``.
    """
    path = Path(path)
    if path.is_dir():
        if (path / PRETRAINED_WEIGHTS).is_file():
            return _read_pretrained_folder(path)
        if (path / "checkpoints").is_dir():
            return _read_checkpoint(run_checkpoint(path), trust_pickle=trust_pickle)
        raise FileNotFoundError(f"{path}: neither a run folder (checkpoints/) nor a pretrained folder "
                                f"({PRETRAINED_WEIGHTS})")
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    if path.suffix == ".safetensors":
        return Weights(nets=_read_safetensors(path), file=path)
    return _read_checkpoint(path, trust_pickle=trust_pickle)


def read_stage(init_from: str | Path, *, stage: str, accepts: tuple[str, ...] = (), run_only: bool = False,
               trust_pickle: bool = False) -> Weights:
    """The earlier stage a later stage's ``init_from`` names: a run folder or a weights file.

    Args:
        init_from: the run folder, checkpoint, pretrained folder or weights file.
        stage: the later stage's method name (for the messages).
        accepts: methods whose runs can feed this stage (empty = any); a file written by another method is an
            error. Files that do not record their method (bare ``.pth``/``.safetensors``) pass.
        run_only: the stage needs a run folder (it reads files the run wrote, such as pseudo masks).

    Raises:
        FileNotFoundError, UserError: one line naming ``init_from`` and what is wrong with it.
    """
    path = Path(init_from)
    if not str(init_from):
        raise UserError(f"{stage}: init_from is empty; name the run folder or weights file of the earlier stage")
    if not path.exists():
        raise FileNotFoundError(f"{stage}: init_from {path} does not exist")
    if run_only and not (path.is_dir() and (path / "checkpoints").is_dir()):
        raise UserError(f"{stage}: init_from {path} is not a run folder (no checkpoints/); {stage} reads the files "
                        f"a run of {' or '.join(accepts) or 'the earlier stage'} writes")
    weights = read_weights(path, trust_pickle=trust_pickle)
    if accepts and weights.method is not None and weights.method not in accepts:
        raise UserError(f"{weights.file}: a run of {weights.method!r}; init_from of {stage} needs "
                        f"{' or '.join(repr(a) for a in accepts)}")
    _check_data_versions(path, stage)
    return weights


def _check_data_versions(path: Path, stage: str) -> None:
    """A run folder (or one of its checkpoints) whose ``env.json`` says it read another version of a ShapesWorld
    folder than this process has read is an error: its classes or images are not the ones this stage sees (a
    coco/ 1.5 teacher has never heard of four of coco/ 1.6's novel categories)."""
    from lowlabel.data import shapesworld_versions

    run = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    if run is None or not (run / "env.json").is_file():
        return
    try:
        recorded = json.loads((run / "env.json").read_text()).get("shapesworld") or {}
    except (OSError, ValueError, AttributeError):
        return
    current = shapesworld_versions()
    for kind, version in sorted(recorded.items()):
        if kind in current and current[kind] != version:
            raise UserError(f"{run}: trained on ShapesWorld {kind}/ {version}, but this {stage} run reads {kind}/ "
                            f"{current[kind]}; retrain it on the current data")


def load_weights(path: str | Path, *, trust_pickle: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """``{network: state_dict}`` of :func:`read_weights` (a bare ``.pth`` state dict comes back as ``{"": ...}``)."""
    return read_weights(path, trust_pickle=trust_pickle).nets


def _read_safetensors(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        flat = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from err
    nets: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, sep, param = key.partition("/")
        if sep:
            nets.setdefault(name, {})[param] = value
        else:  # a bare state dict (no network prefix), as other codebases write
            nets.setdefault("", {})[key] = value
    return nets


def _read_pretrained_folder(folder: Path) -> Weights:
    meta: dict[str, Any] = {}
    if (folder / PRETRAINED_CONFIG).is_file():
        try:
            meta = json.loads((folder / PRETRAINED_CONFIG).read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{folder / PRETRAINED_CONFIG}: malformed JSON ({err})") from err
    file = folder / PRETRAINED_WEIGHTS
    return Weights(nets=_read_safetensors(file), file=file, method=meta.get("method"), config=meta.get("config"))


def _read_checkpoint(path: Path, *, trust_pickle: bool) -> Weights:
    state = load_checkpoint(path, trust_pickle=trust_pickle)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        return Weights(nets=dict(state["nets"]), file=path, method=state.get("method"), config=state.get("config"),
                       run_dir=run_dir)
    return Weights(nets={"": dict(unwrap_state_dict(state, path))}, file=path)


def load_nets(nets: Mapping[str, nn.Module], states: Mapping[str, Any], *, source: Path | str) -> None:
    """Load ``states[name]`` into each net (strict); one-line ``UserError`` on a mismatch."""
    missing = sorted(set(nets) - set(states))
    if missing:
        raise UserError(f"{source}: checkpoint has no weights for network(s) {missing}; it has {sorted(states)}")
    for name, net in nets.items():
        try:
            net.load_state_dict(states[name])
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise UserError(f"{source}: weights of network {name!r} do not fit ({first})") from err


def load_torchvision_weights(model: nn.Module, path: str) -> None:
    """Load a local torchvision-layout state dict into ``model``, ignoring its classifier keys.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read or holds no state dict; keys other than the classifier's are missing
            or unexpected; a tensor has the wrong shape. One line, naming the file.
    """
    file = Path(path)
    if file.is_dir() or file.suffix == ".ckpt":  # a lowlabel run (classify on a torchvision ResNet) or checkpoint
        state = single_network(read_weights(file), file)
        _load_torchvision_state(model, state, file)
        return
    if not file.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = _torch_load(file, weights_only=True)
    except Exception as err:  # unpickling, truncated files and safetensors headers fail in many ways
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{file}: cannot read pretrained weights ({type(err).__name__}: {first})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: not a state dict (a mapping of parameter names to tensors)")
    _load_torchvision_state(model, state, file)


def single_network(weights: Weights, source: Path) -> dict[str, torch.Tensor]:
    """The state dict of the one network (or the one called ``model``) in ``weights``."""
    nets = weights.nets
    if len(nets) == 1:
        return dict(next(iter(nets.values())))
    if "model" in nets:
        return dict(nets["model"])
    raise ValueError(f"{source}: holds networks {sorted(nets)}; expected one backbone network")


def _load_torchvision_state(model: nn.Module, state: Mapping[str, torch.Tensor], file: Path) -> None:
    """Load a torchvision-layout ``state`` into ``model`` (classifier keys ignored); one-line errors naming ``file``."""
    classifier = ("fc.", "classifier.", "AuxLogits.")
    state = {k: v for k, v in state.items() if not k.startswith(classifier)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(classifier)}
    # BatchNorm fills in num_batches_tracked for files saved before PyTorch 0.4 (torchvision's original ImageNet
    # ResNet-50, the one IRN and SIPE load).
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{file}: not a torchvision state dict for this backbone ({len(missing)} missing keys, "
                         f"e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{file}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)


SYNTH_PRETRAIN = "synth:pretrain"
PRETRAIN_ARCHS = ("resnet_small", "resnet18", "resnet34", "resnet50")  # what `lowlabel train classify` trains


def pretrain_cache_dir(preset: str, seed: int, arch: str, width: int | None = None) -> Path:
    """Where the ``classify`` run on ShapesWorld ``pretrain/`` of ``preset``/``seed`` lives for one backbone."""
    from lowlabel.data import cache_dir

    name = f"{arch}-w{width}" if arch == "resnet_small" else arch
    return cache_dir() / "pretrained" / f"shapesworld-{preset}-seed{seed}" / name


def resolve_pretrained(spec: str, *, arch: str, width: int | None = None) -> str:
    """The weights a ``pretrained`` config value names: ``synth:pretrain[:<preset>[:<seed>]]`` becomes the cached
    ``classify`` run on ShapesWorld ``pretrain/`` (default ``full``, seed 0) for backbone ``arch`` (and ``width``);
    any other value is returned as it is.

    Raises:
        UserError: the cached run does not exist. The message names the one command that makes it.
    """
    if not spec.startswith(SYNTH_PRETRAIN):
        return spec
    parts = spec.split(":")
    if parts[:2] != ["synth", "pretrain"] or len(parts) > 4:
        raise UserError(f"pretrained {spec!r}: expected synth:pretrain, synth:pretrain:<preset> or "
                        f"synth:pretrain:<preset>:<seed>")
    if arch not in PRETRAIN_ARCHS:
        raise UserError(f"pretrained {spec}: ShapesWorld pretraining exists for {', '.join(PRETRAIN_ARCHS)}, "
                        f"not {arch}")
    preset = parts[2] if len(parts) > 2 else "full"
    try:
        seed = int(parts[3]) if len(parts) > 3 else 0
    except ValueError:
        raise UserError(f"pretrained {spec!r}: seed {parts[3]!r} is not an integer") from None
    folder = pretrain_cache_dir(preset, seed, arch, width)
    width_arg = f" --model.width {width}" if arch == "resnet_small" else ""
    command = (f"lowlabel train classify --data.root synth:{preset}:{seed} --model.backbone {arch}{width_arg} "
               f"--run-dir {folder}")
    if not any((folder / "checkpoints" / name).is_file() for name in RUN_CHECKPOINTS):
        raise UserError(f"pretrained {spec}: no {arch}{f' width {width}' if width_arg else ''} backbone pretrained "
                        f"on ShapesWorld {preset} pretrain/ yet; make it once (about 30 CPU-minutes at full) with: "
                        f"{command}")
    done, total = _run_progress(folder)
    if done is None or total is None or done < total:
        raise UserError(f"pretrained {spec}: the pretraining run {folder} has not finished (step {done} of {total}); "
                        f"finish it with: {command} --resume auto")
    return str(folder)


def _run_progress(run_dir: Path) -> tuple[int | None, int | None]:
    """(step of the run's last evaluation, its ``trainer.max_steps``), None where the run folder does not say."""
    import yaml

    try:
        done = json.loads((run_dir / "metrics.json").read_text()).get("step")
        total = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("trainer", {}).get("max_steps")
    except (OSError, ValueError, yaml.YAMLError):
        return None, None
    return done, total


def load_lowlabel_body(model: nn.Module, path: str | Path) -> None:
    """Load the ``backbone.body.*`` weights of a lowlabel checkpoint / ``save_pretrained`` folder into ``model``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no network in it has backbone body weights, or they do not fit ``model.body``.
    """
    nets = load_weights(path)
    marker = "backbone.body."
    body = {}
    for net in nets.values():
        for key, value in net.items():
            if key.startswith(marker) or f".{marker}" in key:
                body[key[key.index(marker) + len("backbone.") :]] = value
    if not body:
        raise ValueError(f"{path}: no backbone.body.* weights (expected a lowlabel run of a resnet_small method)")
    expected = {k for k in model.state_dict() if k.startswith("body.")}
    if set(body) != expected:
        raise ValueError(f"{path}: backbone weights do not fit this resnet_small (missing "
                         f"{sorted(expected - set(body))[:3]}, unexpected {sorted(set(body) - expected)[:3]})")
    try:
        model.load_state_dict(body, strict=False)
    except RuntimeError as err:  # shape mismatch (another width)
        detail = str(err).splitlines()[-1].strip()
        raise ValueError(f"{path}: backbone weights do not fit this resnet_small: {detail}") from None
