"""``lowlabel``: the command-line entry point.

Each command group lives in its own module of ``lowlabel/cli/`` exposing two functions::

    def add_parser(subcommands) -> None   # subcommands.add_subcommand("<name>", parser, help=...)
    def run(cfg) -> int                   # cfg is the parsed namespace of that subcommand

and is listed in ``COMMANDS`` below only once it works (no placeholders). Optionally
``add_parser(subcommands, argv)`` (to build only the parser the command line needs, as ``train``
does) and ``preprocess_argv(argv) -> argv`` (aliases).

Parse errors never print usage: every parser is switched to ``exit_on_error=False`` and the
error becomes one line ``error: ...`` with exit status 2 (see :mod:`lowlabel.cli.errors`).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Sequence
from typing import Any

# command name -> module under lowlabel.cli. Order = order in --help.
COMMANDS: dict[str, str] = {
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "data": "data",
    "score": "score",
    "report": "report",
    "export": "export",
    "demo": "demo",
}


def _no_exit(parser: Any) -> None:
    """Make ``parser`` and all its subcommand parsers raise instead of printing usage and exiting."""
    parser.exit_on_error = False
    action = getattr(parser, "_subcommands_action", None)
    if action is not None:
        for sub in action._name_parser_map.values():
            _no_exit(sub)


def build_parser(argv: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """The root parser and the command modules (only the parsers ``argv`` needs are fully built)."""
    from jsonargparse import ArgumentParser

    from lowlabel import __version__

    parser = ArgumentParser(
        prog="lowlabel",
        description="Label-efficient visual localization: train, evaluate, score and compare "
        "DA-WSOL, SIPE and friends. Add --debug to any command to see tracebacks.",
        exit_on_error=False,
    )
    parser.add_argument("--version", action="version", version=f"lowlabel {__version__}")
    subcommands = parser.add_subcommands(dest="command")
    modules = {name: importlib.import_module(f"lowlabel.cli.{mod}") for name, mod in COMMANDS.items()}
    for module in modules.values():
        if len(inspect.signature(module.add_parser).parameters) >= 2:
            module.add_parser(subcommands, list(argv))
        else:
            module.add_parser(subcommands)
    _no_exit(parser)
    return parser, modules


def parse(parser: Any, argv: list[str]) -> Any:
    """``parser.parse_args(argv)`` with clearer one-line errors for unknown keys in config files."""
    import argparse

    try:
        try:
            return parser.parse_args(argv)
        except argparse.ArgumentError as err:
            if isinstance(err.__cause__, KeyError):  # jsonargparse 4.53 fails to word nested-subcommand errors
                _reparse_deepest(parser, argv)
            raise
    except argparse.ArgumentError as err:
        raise argparse.ArgumentError(None, _explain(str(err), argv)) from err


def _explain(message: str, argv: list[str]) -> str:
    """Name unknown keys plainly, and the config file when the bad key came from one."""
    import re

    unknown = re.search(r"(?:Group|Subcommand) '([^']+)' does not accept option '([^']+)'", message)
    option = re.search(r"Option '([^']+)' is not accepted", message)
    typed = re.search(r'Parser key "([^"]+)"', message)
    if unknown:
        key = f"{unknown.group(1)}.{unknown.group(2)}"
        message = f"unknown key '{key}'"
    elif option:
        key = option.group(1)
        message = f"unknown key '{key}'"
    elif typed:
        key = typed.group(1)
    else:
        key = None
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if key is None:
        bad_yaml = files and message.startswith("Problems parsing config")
        return message.replace('"<unicode string>", ', "") + (f" (in config file {files[-1]})" if bad_yaml else "")
    if files and not any(a == f"--{key}" or a.startswith(f"--{key}=") for a in argv):
        message += f" (in config file {', '.join(files)})"
    return message


def _reparse_deepest(parser: Any, argv: list[str]) -> None:
    """Parse the tail of ``argv`` with the innermost subcommand parser (raises its own error)."""
    rest = list(argv)
    while getattr(parser, "_subcommands_action", None) is not None:
        names = parser._subcommands_action._name_parser_map
        index = next((i for i, a in enumerate(rest) if a in names), None)
        if index is None:
            return
        parser, rest = names[rest[index]], rest[index + 1 :]
    parser.parse_args(rest)


def main(argv: Sequence[str] | None = None) -> int:
    from lowlabel.cli.errors import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]

    def _go() -> int:
        nonlocal argv
        command = next((a for a in argv if not a.startswith("-")), None)
        if command in COMMANDS:
            module = importlib.import_module(f"lowlabel.cli.{COMMANDS[command]}")
            if hasattr(module, "preprocess_argv"):
                argv = module.preprocess_argv(argv)
        parser, modules = build_parser(argv)
        if not argv:
            parser.print_help()
            return 0
        cfg = parse(parser, argv)
        name = cfg.command
        return int(modules[name].run(cfg[name]) or 0)

    try:
        return run_guarded(_go, debug=debug)
    except SystemExit as stop:  # --help, --version, --print_config
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BrokenPipeError:  # `lowlabel ... | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
