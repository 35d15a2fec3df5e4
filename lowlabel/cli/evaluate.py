"""``lowlabel evaluate <method> --ckpt RUN_DIR_OR_CKPT [--split test]``."""

from __future__ import annotations

from typing import Any

from lowlabel.cli.common import check_method, print_metrics


def add_parser(subcommands: Any) -> None:
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        description="Evaluate a trained model on a split. Rebuilds the method from the run's config.yaml, loads "
        "the best (else last) checkpoint, prints the metrics and writes metrics.json and eval/<split>/ into the "
        "run folder (next to the checkpoint file for a loose checkpoint).",
        exit_on_error=False,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with the options below.")
    parser.add_argument("method", type=str, help="Method name, as in `lowlabel train <method>`.")
    parser.add_argument("--ckpt", type=str, required=True, help="A run folder or a checkpoint file.")
    parser.add_argument("--split", type=str, default="test", help="Split to evaluate (train, val, test, ...).")
    parser.add_argument("--out", type=str | None, default=None, help="Write metrics.json and eval/ here instead.")
    parser.add_argument("--method-config", type=str | None, default=None,
                        help="Method config YAML, needed only for weight files not written by lowlabel (.pth).")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="Allow loading pickled .pth files (they can run arbitrary code; only for trusted files).")
    parser.add_argument("--zero-shot", type=str | None, default=None,
                        help="gt|proposals: evaluate an earlier stage's run (--ckpt) zero-shot, without training this "
                        "method (ovd: a clip or regionclip run on GT boxes or RPN proposals); --method-config sets "
                        "the rest (data, proposals). Writes into <ckpt>/zero_shot/<mode>/ unless --out is given.")
    subcommands.add_subcommand("evaluate", parser, help="Evaluate a trained run or checkpoint on a split.")


def method_config(name: str, path: str | None) -> Any:
    """The method config from ``--method-config`` (None when not given)."""
    if path is None:
        return None
    from lowlabel.engine.config import load_config_file

    return load_config_file(check_method(name).CONFIG, path)


def run_zero_shot(cfg: Any) -> int:
    """``--zero-shot``: the method's ``zero_shot_config(config, init_from=, mode=)`` builds it on the --ckpt run,
    whose networks are evaluated as built (nothing of this method is loaded)."""
    from pathlib import Path

    from lowlabel.engine.frozen import frozen_networks, merge_nets
    from lowlabel.engine.logging import write_metrics
    from lowlabel.engine.loop import evaluate_nets
    from lowlabel.errors import UserError

    module = check_method(cfg.method)
    make = getattr(module, "zero_shot_config", None)
    if make is None:
        raise UserError(f"method {cfg.method!r} has no zero-shot evaluation; drop --zero-shot")
    config = make(method_config(cfg.method, cfg.method_config), init_from=cfg.ckpt, mode=cfg.zero_shot)
    method = module.build(config)
    nets = merge_nets(dict(method.networks()), frozen_networks(method))
    ckpt = Path(cfg.ckpt)
    folder = Path(cfg.out) if cfg.out else (ckpt if ckpt.is_dir() else ckpt.parent) / "zero_shot" / cfg.zero_shot
    result = evaluate_nets(method, nets, split=cfg.split, out_dir=folder / "eval" / cfg.split)
    write_metrics(folder, result, step=None, split=cfg.split)
    print_metrics(result.metrics, title=f"{cfg.method} zero-shot ({cfg.zero_shot}) on {cfg.split}",
                  per_class=result.per_class)
    print(f"wrote {folder / 'metrics.json'} and {folder / 'eval' / cfg.split}")
    return 0


def run(cfg: Any) -> int:
    from lowlabel.engine import evaluate_run

    if cfg.zero_shot:
        return run_zero_shot(cfg)
    check_method(cfg.method)
    result, folder = evaluate_run(cfg.ckpt, split=cfg.split, method_name=cfg.method, trust_pickle=cfg.trust_pickle,
                                  config=method_config(cfg.method, cfg.method_config), out_dir=cfg.out)
    print_metrics(result.metrics, title=f"{cfg.method} on {cfg.split}", per_class=result.per_class)
    print(f"wrote {folder / 'metrics.json'} and {folder / 'eval' / cfg.split}")
    return 0
