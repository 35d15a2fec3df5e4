"""``lowlabel predict <method> --ckpt ... --input DIR --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lowlabel.cli.common import check_method
from lowlabel.errors import UserError


def add_parser(subcommands: Any) -> None:
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        description="Run a trained model on your own inputs (images, a video, ...) and write its outputs "
        "(CAMs, masks, propagated masks, detections, translations; depends on the method).",
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with the options below.")
    parser.add_argument("method", type=str, help="Method name, as in `lowlabel train <method>`.")
    parser.add_argument("--ckpt", type=str, required=True, help="A run folder or a checkpoint file.")
    parser.add_argument("--input", type=str, required=True, help="Input folder or file.")
    parser.add_argument("--out", type=str, required=True, help="Output folder (created).")
    parser.add_argument("--mask", type=str | None, default=None,
                        help="First-frame mask (palette or grey PNG of object ids) for methods that propagate it "
                        "through a video given as --input (a video file or a folder of frames).")
    parser.add_argument("--classes", type=str | None, default=None,
                        help="Comma-separated class names to detect, for open-vocabulary methods (ovd): any words, "
                        "e.g. \"star, striped ring\" (default: the classes the run was trained and evaluated with).")
    parser.add_argument("--method-config", type=str | None, default=None,
                        help="Method config YAML, needed only for weight files not written by lowlabel (.pth).")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="Allow loading pickled .pth files (they can run arbitrary code; only for trusted files).")
    subcommands.add_subcommand("predict", parser, help="Predict with a trained model on your own inputs.")


def run(cfg: Any) -> int:
    import torch

    from lowlabel.cli.evaluate import method_config
    from lowlabel.engine import load_method_from_run

    check_method(cfg.method)
    inputs = Path(cfg.input)
    if not inputs.exists():
        raise FileNotFoundError(f"--input not found: {inputs}")
    loaded = load_method_from_run(cfg.ckpt, method_name=cfg.method, trust_pickle=cfg.trust_pickle,
                                  config=method_config(cfg.method, cfg.method_config))
    predict = getattr(loaded.method, "predict", None)
    if predict is None:
        raise UserError(f"method {cfg.method!r} has no predict(); use `lowlabel evaluate` instead")
    out = Path(cfg.out)
    options = {}
    if cfg.mask:
        import inspect

        if "mask" not in inspect.signature(predict).parameters:
            raise UserError(f"method {cfg.method!r} does not propagate masks; drop --mask")
        if not Path(cfg.mask).is_file():
            raise FileNotFoundError(f"--mask not found: {cfg.mask}")
        options["mask"] = Path(cfg.mask)
    if cfg.classes is not None:
        import inspect

        if "classes" not in inspect.signature(predict).parameters:
            raise UserError(f"method {cfg.method!r} has a fixed class list; drop --classes")
        options["classes"] = [name.strip() for name in cfg.classes.split(",") if name.strip()]
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        predict(loaded.nets, inputs, out, **options)
    print(f"wrote predictions to {out}")
    return 0
