"""``lowlabel export RUN --format onnx|safetensors [--backbone-only] [--out DIR]``."""

from __future__ import annotations

import sys
from typing import Any

DESCRIPTION = (
    "Export a trained run for other runtimes and codebases, with a config.json (inputs and outputs with their "
    "shapes, normalisation, class names, the lowlabel version and the checkpoint's SHA-256). "
    "onnx: the networks that predict at inference time as <name>.onnx, with a dynamic batch axis (and height and "
    'width where the network allows), checked against PyTorch with ONNX Runtime; needs pip install "lowlabel[export]". '
    "safetensors: the trained weights as model.safetensors, which lowlabel.load reads back; with --backbone-only, "
    "the backbone alone as backbone.safetensors, in torchvision's (= timm's) ResNet keys or resnet_small's."
)
FORMAT_HELP = (
    "onnx (cam, da_wsol: logits and CAMs; mlcam: logits and maps; sipe: logits, maps and IS-CAM; seg: the logits "
    "map; classify: logits; contrastcorr: the encoder's features) or safetensors (any method)."
)


def add_parser(subcommands: Any) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(description=DESCRIPTION, exit_on_error=False)
    parser.add_argument("run", type=str, help="A run folder, a checkpoint file or a save_pretrained folder.")
    parser.add_argument("--format", type=str, required=True, help=FORMAT_HELP)
    parser.add_argument(
        "--backbone-only",
        action="store_true",
        help="Write only the backbone (safetensors, torchvision / timm ResNet keys or resnet_small's).",
    )
    parser.add_argument(
        "--out", type=str | None, default=None, help="Output folder (default: RUN/export/<onnx|safetensors|backbone>)."
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="Allow loading pickled .pth files (they can run arbitrary code; only for trusted files).",
    )
    subcommands.add_subcommand("export", parser, help="Export a run as ONNX or safetensors (+ config.json).")


def run(cfg: Any) -> int:
    from lowlabel.engine.export import TOLERANCE, export_run

    exported = export_run(
        cfg.run, fmt=cfg.format, out=cfg.out, backbone_only=cfg.backbone_only, trust_pickle=cfg.trust_pickle
    )
    for file in exported.files:
        check = exported.checks.get(file.stem) if file.suffix == ".onnx" else None
        note = ""
        if check is not None:
            note = f" (ONNX Runtime vs PyTorch: max abs diff {check.max_abs_diff:.1e}, outputs up to "
            note += f"{check.max_abs_output:.1e})"
        print(f"wrote {file}{note}")
        if check is not None and not check.ok:
            print(
                f"warning: {file}: ONNX Runtime differs from PyTorch by {check.max_abs_diff:.1e} on outputs up to "
                f"{check.max_abs_output:.1e} (more than {TOLERANCE:g} of their size)",
                file=sys.stderr,
            )
    return 0
