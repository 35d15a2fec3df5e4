"""``lowlabel train <method>``: one subcommand per entry of ``METHODS``, options from the method's config.

Options come from the method module's ``CONFIG`` dataclass (``--optim.lr 0.01``,
``--trainer.max_steps 5``), read from ``--config FILE`` and printed by ``--print_config``. Only
the parser of the method named on the command line is built (method modules import lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lowlabel.cli.common import check_method, default_run_dir, is_rank_zero, latest_run, print_metrics, selected_method

# convenience flag -> config key (the flag is rewritten before parsing, so --print_config shows it)
ALIASES = {
    "--seed": "--trainer.seed",
    "--precision": "--trainer.precision",
    "--devices": "--trainer.devices",
    "--strategy": "--trainer.strategy",
    "--num-nodes": "--trainer.num_nodes",
    "--accelerator": "--trainer.accelerator",
    "--max-steps": "--trainer.max_steps",
}
FLAG_ALIASES = {"--deterministic": "--trainer.deterministic=true"}

_PARSERS: dict[str, Any] = {}


def preprocess_argv(argv: list[str]) -> list[str]:
    """Rewrite the convenience flags (``--seed 3``) into config keys (``--trainer.seed 3``)."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag in ALIASES:
            out.append(ALIASES[flag] + eq + value)
        elif arg in FLAG_ALIASES:
            out.append(FLAG_ALIASES[arg])
        else:
            out.append(arg)
    return out


def method_parser(name: str) -> Any:
    """The full parser of ``lowlabel train <name>``."""
    from lowlabel.engine.config import config_parser

    module = check_method(name)
    doc = (module.__doc__ or "").strip().splitlines()
    parser = config_parser(module.CONFIG, prog=f"lowlabel train {name}",
                           description=(doc[0] if doc else f"Train {name}.") + _FLAGS_HELP)
    parser.add_argument("--run-dir", type=str | None, default=None,
                        help="Run folder (default: runs/<method>/<YYYYmmdd-HHMMSS>/).")
    parser.add_argument("--resume", type=str | None, default=None,
                        help="'auto' = continue from <run-dir>/checkpoints/last.ckpt (or the latest run of this "
                        "method when --run-dir is not given; a fresh start if there is none), or a checkpoint path.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bar (it is off anyway when "
                        "stdout is not a terminal).")
    _PARSERS[name] = parser
    return parser


_FLAGS_HELP = (
    " Shortcuts: --seed N, --deterministic, --precision P (32-true, bf16-mixed, 16-mixed), --devices N, "
    "--strategy S (auto, ddp, ...), --num-nodes N, --accelerator A (cpu, cuda, auto), --max-steps N "
    "set the trainer.* options of the same name."
)


def add_parser(subcommands: Any, argv: Sequence[str] = ()) -> None:
    from jsonargparse import ArgumentParser

    from lowlabel.methods import METHODS, SUMMARIES

    parser = ArgumentParser(description="Train a method. Run `lowlabel train <method> --help` for its options.",
                            exit_on_error=False)
    subcommands.add_subcommand("train", parser, help="Train a method; writes a run folder (config, logs, "
                               "checkpoints, metrics.json).")
    methods = parser.add_subcommands(dest="method")
    chosen = selected_method(argv, "train")
    for name, module_path in METHODS.items():
        if name == chosen:
            sub = method_parser(name)
        else:  # never parsed: only the chosen method's parser is built
            sub = ArgumentParser(description=f"Train {name}.", exit_on_error=False)
        methods.add_subcommand(name, sub, help=SUMMARIES.get(name, f"train {name} ({module_path})"))


def resolve_run_dir(method: str, run_dir: str | None, resume: str | None) -> Path:
    """The run folder: ``--run-dir``; else the resumed run's; else a new timestamped folder."""
    if run_dir:
        return Path(run_dir)
    if resume == "auto":
        return latest_run(method) or default_run_dir(method)
    if resume:
        ckpt = Path(resume)
        if ckpt.parent.name == "checkpoints":
            return ckpt.parent.parent
    return default_run_dir(method)


def run(cfg: Any) -> int:
    from lowlabel.engine import fit, seed_everything
    from lowlabel.engine.config import config_from_namespace

    name = cfg.method
    module = check_method(name)
    ns = cfg[name]
    config = config_from_namespace(module.CONFIG, _PARSERS[name], ns)
    if ns.resume not in (None, "auto") and not Path(ns.resume).is_file():
        raise FileNotFoundError(f"--resume: checkpoint not found: {ns.resume}")
    run_dir = resolve_run_dir(name, ns.run_dir, ns.resume)
    seed_everything(config.trainer.seed, deterministic=config.trainer.deterministic)
    method = module.build(config)
    result = fit(method, run_dir=run_dir, resume=ns.resume, progress=False if ns.no_progress else None)
    if is_rank_zero():
        print_metrics(result.metrics, title=f"{name}: {config.trainer.eval_split} after {config.trainer.max_steps} "
                      "steps", per_class=result.per_class)
        print(f"run folder: {run_dir}")
    return 0
