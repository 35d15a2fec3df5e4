"""``lowlabel export``: a trained run as files that other runtimes and codebases read, with a ``config.json``.

* ``onnx`` (:func:`export_onnx`): each network of the method's ``export_networks`` (an
  :class:`~lowlabel.methods.base.ExportNet`: plain tensors in and out) as ``<name>.onnx``, written by torch's dynamo
  exporter (``torch.onnx.export(dynamo=True)``) with a dynamic batch axis, and dynamic height and width where the
  network allows them. When ONNX Runtime is installed, each file is then run at batch sizes 1 and 3 against PyTorch
  and the largest absolute difference is recorded, with the largest output value for its scale.
* ``safetensors`` (:func:`export_safetensors`): the trained networks' weights in the
  :func:`lowlabel.pretrained.save_pretrained` layout, which ``lowlabel.load`` reads back.
* backbone only (:func:`export_backbone_only`): the backbone alone, through
  :func:`lowlabel.pretrained.export_backbone` (torchvision's ResNet keys, which timm's ResNets share, or
  ``resnet_small``'s).

The ONNX ``config.json``::

    {"format": "lowlabel-onnx", "version": 1, "lowlabel_version": ..., "torch_version": ..., "method": "cam",
     "checkpoint": {"file": ..., "sha256": ..., "step": ...},
     "networks": {"model": {"file": "model.onnx", "opset": 20,
                            "inputs": [{"name": "images", "shape": ["batch", 3, "height", "width"], "dtype": ...}],
                            "outputs": [{"name": "cams", "shape": [...], "dtype": ..., "description": ...}, ...],
                            "preprocessing": {"colour": "RGB", "scale": 0.0039..., "mean": [...], "std": [...],
                                              "image_size": [224, 224]},
                            "class_names": [...], "check": {"runtime": ..., "batch_sizes": [1, 3],
                                                            "max_abs_diff": ..., "max_abs_output": ...}}}}

The networks' input is ``(image * scale - mean) / std``, channels in ``colour`` order, (B, 3, H, W) float32.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lowlabel.engine.run import LoadedMethod
from lowlabel.errors import UserError
from lowlabel.methods.base import ExportNet
from lowlabel.models.weights import RUN_CHECKPOINTS

FORMATS = ("onnx", "safetensors")
ONNX_FORMAT = "lowlabel-onnx"
BACKBONE_FORMAT = "lowlabel-backbone"
CONFIG = "config.json"
CHECK_BATCH_SIZES = (1, 3)  # the example inputs are a batch of 2: the check runs other sizes
# `lowlabel export` warns when max |ONNX Runtime - PyTorch| > TOLERANCE * max(1, max |output|): float32 sums in
# another order differ by ~1e-6 of the values' size (a random-init ResNet-50's CAMs reach 1e2, Inception's 1e7)
TOLERANCE = 1e-4


@dataclass
class Check:
    """ONNX Runtime against PyTorch on one network: ``max_abs_diff`` over every output, ``max_abs_output`` the
    largest output value (the scale of the difference)."""

    max_abs_diff: float
    max_abs_output: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE * max(1.0, self.max_abs_output)


@dataclass
class Exported:
    """What an export wrote.

    Attributes:
        folder: the output folder.
        files: the files written, ``config.json`` last.
        checks: ONNX only: network name -> :class:`Check` (None when ONNX Runtime is not installed).
    """

    folder: Path
    files: list[Path]
    checks: dict[str, Check | None] = field(default_factory=dict)


def check_format(fmt: str, *, backbone_only: bool = False) -> None:
    """``UserError`` for an unknown format, or ``--backbone-only`` with a format other than safetensors."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    if backbone_only and fmt != "safetensors":
        raise UserError(f"--backbone-only writes a safetensors state dict; use --format safetensors, not {fmt}")


def require_onnx() -> None:
    """``UserError`` naming the extra to install when the ONNX exporter's packages are missing."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f'ONNX export needs {" and ".join(missing)} (not installed): pip install "lowlabel[export]"')


def check_has_checkpoint(path: str | Path) -> Path:
    """``path`` if it exists; ``UserError`` for a run folder (``config.yaml``) without a checkpoint yet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"export: {path} does not exist")
    if (
        path.is_dir()
        and (path / "config.yaml").is_file()
        and not any((path / "checkpoints" / name).is_file() for name in RUN_CHECKPOINTS)
    ):
        raise UserError(
            f"{path}: this run has no checkpoint to export (no checkpoints/{' or '.join(RUN_CHECKPOINTS)});"
            " let it reach its first checkpoint, or resume it with --resume auto"
        )
    return path


def default_out(source: Path, fmt: str, *, backbone_only: bool = False) -> Path:
    """``<run>/export/<onnx|safetensors|backbone>`` (next to a loose checkpoint or weights file: its folder)."""
    base = source if source.is_dir() else source.parent
    if base.name == "checkpoints" and (base.parent / "config.yaml").is_file():
        base = base.parent
    return base / "export" / ("backbone" if backbone_only else fmt)


def export_run(
    path: str | Path,
    *,
    fmt: str,
    out: str | Path | None = None,
    backbone_only: bool = False,
    trust_pickle: bool = False,
) -> Exported:
    """Export the run folder, checkpoint or ``save_pretrained`` folder ``path`` (see the module docstring).

    Raises:
        UserError, FileNotFoundError: an unknown format, a run without a checkpoint, a method without exportable
            networks (ONNX), missing ONNX packages; one line each.
    """
    check_format(fmt, backbone_only=backbone_only)
    source = check_has_checkpoint(path)
    folder = Path(out) if out is not None else default_out(source, fmt, backbone_only=backbone_only)
    if backbone_only:
        return export_backbone_only(source, folder, trust_pickle=trust_pickle)
    if fmt == "onnx":
        require_onnx()
    from lowlabel.pretrained import load

    loaded = load(source, trust_pickle=trust_pickle)
    if fmt == "onnx":
        return export_onnx(loaded, folder)
    return export_safetensors(loaded, folder)


def export_networks(loaded: LoadedMethod) -> dict[str, ExportNet]:
    """The method's ``export_networks`` of its trained networks; ``UserError`` naming a method without it."""
    method = loaded.method
    fn = getattr(method, "export_networks", None)
    if fn is None:
        raise UserError(
            f"method {method.name!r} has no networks to export to ONNX (no export_networks); "
            f"--format safetensors writes its weights"
        )
    return dict(fn(loaded.nets))


def export_onnx(loaded: LoadedMethod, out: str | Path) -> Exported:
    """Write ``<out>/<name>.onnx`` for each of the method's export networks and ``<out>/config.json``."""
    require_onnx()
    specs = export_networks(loaded)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    files, checks = [], {}
    for name, spec in specs.items():
        file = folder / f"{name}.onnx"
        write_onnx(spec, file, what=f"{loaded.method.name} network {name!r}")
        checks[name] = check = onnx_check(spec, file)
        entries[name] = {"file": file.name, **_graph_info(file, spec), **_preprocessing(spec)}
        entries[name]["check"] = None
        if check is not None:
            entries[name]["check"] = {
                "runtime": f"onnxruntime {_version('onnxruntime')}",
                "batch_sizes": list(CHECK_BATCH_SIZES),
                "max_abs_diff": check.max_abs_diff,
                "max_abs_output": check.max_abs_output,
            }
        files.append(file)
    meta = {"format": ONNX_FORMAT, "version": 1, **_provenance(loaded), "networks": entries}
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return Exported(folder=folder, files=[*files, folder / CONFIG], checks=checks)


def export_safetensors(loaded: LoadedMethod, out: str | Path) -> Exported:
    """The trained networks (no frozen ones) as ``model.safetensors`` + ``config.json`` (``lowlabel.load`` reads them);
    ``config.json`` also holds the source checkpoint and, for methods with export networks, their preprocessing."""
    from lowlabel.pretrained import CONFIG as PRETRAINED_CONFIG
    from lowlabel.pretrained import WEIGHTS, save_pretrained

    nets = {name: net for name, net in loaded.nets.items() if name not in loaded.frozen}
    extra: dict[str, Any] = {"checkpoint": _provenance(loaded)["checkpoint"]}
    if hasattr(loaded.method, "export_networks"):
        extra["inference"] = {name: _preprocessing(spec) for name, spec in export_networks(loaded).items()}
    folder = save_pretrained(loaded.method, out, nets=nets, extra=extra)
    return Exported(folder=folder, files=[folder / WEIGHTS, folder / PRETRAINED_CONFIG])


def export_backbone_only(source: Path, out: str | Path, *, trust_pickle: bool = False) -> Exported:
    """``<out>/backbone.safetensors`` (:func:`lowlabel.pretrained.export_backbone`) and a ``config.json`` naming its
    key layout and the checkpoint it came from."""
    from safetensors import safe_open

    from lowlabel import __version__
    from lowlabel.models.weights import read_weights
    from lowlabel.pretrained import export_backbone

    weights = read_weights(source, trust_pickle=trust_pickle)
    folder = Path(out)
    file = export_backbone(source, folder / "backbone.safetensors", trust_pickle=trust_pickle)
    with safe_open(str(file), framework="pt") as handle:
        layout = (handle.metadata() or {}).get("layout")
        count = len(list(handle.keys()))
    meta = {
        "format": BACKBONE_FORMAT,
        "version": 1,
        "lowlabel_version": __version__,
        "method": weights.method,
        "checkpoint": {"file": str(weights.file), "sha256": weights.sha256()},
        "file": file.name,
        "layout": layout,
        "tensors": count,
        "load": "torchvision.models.<resnet>().load_state_dict(state, strict=False): only fc.* is missing"
        if layout == "torchvision"
        else "model.pretrained: <this file> in a lowlabel config with resnet_small",
    }
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return Exported(folder=folder, files=[file, folder / CONFIG])


def write_onnx(spec: ExportNet, file: Path, *, what: str) -> None:
    """``torch.onnx.export(dynamo=True)`` of ``spec`` into ``file`` (weights inside the file).

    Raises:
        UserError: the exporter failed (one line; ``--debug`` shows its traceback).
    """
    dims: dict[str, Any] = {}
    shapes = tuple(
        {
            axis: dims.setdefault(label, torch.export.Dim(label))
            for axis, label in spec.dynamic_axes.get(name, {}).items()
        }
        or None
        for name in spec.input_names
    )
    spec.module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # one Dim shared by several inputs (SIPE's images and labels share "batch") makes the exporter say it
            # keeps one of the equal names
            warnings.filterwarnings("ignore", message="# The axis name")
            torch.onnx.export(
                spec.module,
                spec.example_inputs,
                str(file),
                dynamo=True,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=shapes,
                external_data=False,
                verbose=False,
            )
    except Exception as err:  # torch.export and the ONNX translation fail in many ways; keep one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{what}: the ONNX exporter failed ({type(err).__name__}: {first})") from err


def onnx_check(spec: ExportNet, file: Path, batch_sizes: tuple[int, ...] = CHECK_BATCH_SIZES) -> Check | None:
    """ONNX Runtime against PyTorch on ``file``, with the example inputs re-batched to each of ``batch_sizes`` (rows of
    the example batch, repeated); None when onnxruntime is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    diff, scale = 0.0, 0.0
    for size in batch_sizes:
        inputs = [rebatch(x, spec.dynamic_axes.get(n, {}), size) for n, x in zip(spec.input_names, spec.example_inputs)]
        with torch.no_grad():
            expected = spec.module(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(spec.output_names, {name: x.numpy() for name, x in zip(spec.input_names, inputs)})
        for ours, theirs in zip(expected, got):
            diff = max(diff, float((ours - torch.from_numpy(theirs)).abs().max()))
            scale = max(scale, float(ours.abs().max()))
    return Check(max_abs_diff=diff, max_abs_output=scale)


def rebatch(x: torch.Tensor, axes: Mapping[int, str], size: int) -> torch.Tensor:
    """``x`` with ``size`` rows along its ``"batch"`` axis (the rows of ``x`` in turn), unchanged without one."""
    axis = next((a for a, label in axes.items() if label == "batch"), None)
    if axis is None:
        return x
    return x.index_select(axis, torch.arange(size) % x.shape[axis])


def _graph_info(file: Path, spec: ExportNet) -> dict[str, Any]:
    """Opset, and each input's and output's name, shape (ints and symbolic sizes) and dtype, read from the graph."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(file))

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "shape": shape, "dtype": str(tensor_dtype_to_np_dtype(tensor.elem_type))}

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    outputs = [{**describe(v), "description": spec.outputs.get(v.name, "")} for v in model.graph.output]
    return {"opset": opset, "inputs": [describe(v) for v in model.graph.input], "outputs": outputs}


def _preprocessing(spec: ExportNet) -> dict[str, Any]:
    size = list(spec.image_size) if spec.image_size is not None else None
    return {
        "preprocessing": {
            "colour": spec.colour,
            "scale": spec.scale,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "image_size": size,
        },
        "class_names": spec.class_names,
    }


def _provenance(loaded: LoadedMethod) -> dict[str, Any]:
    from lowlabel import __version__
    from lowlabel.data.io import file_sha256

    checkpoint = {"file": str(loaded.ckpt_path), "sha256": file_sha256(loaded.ckpt_path), "step": loaded.step}
    return {
        "lowlabel_version": __version__,
        "torch_version": torch.__version__,
        "method": loaded.method.name,
        "checkpoint": checkpoint,
    }


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
