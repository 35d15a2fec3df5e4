"""``lowlabel``: the command-line entry point.

Each command group lives in its own module of ``lowlabel/cli/`` exposing two functions::

    def add_parser(subcommands) -> None   # subcommands.add_subcommand("<name>", parser, help=...)
    def run(cfg) -> int                   # cfg is the parsed namespace of that subcommand

and is listed in ``COMMANDS`` below only once it works (no placeholders).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# command name -> module under lowlabel.cli. Order = order in --help.
COMMANDS: dict[str, str] = {}


def main(argv: Sequence[str] | None = None) -> int:
    from jsonargparse import ArgumentParser

    from lowlabel import __version__
    from lowlabel.cli.errors import run_guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]

    parser = ArgumentParser(
        prog="lowlabel",
        description="Label-efficient visual localization: train, evaluate, score and compare "
        "DA-WSOL, SIPE and friends. Add --debug to any command to see tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"lowlabel {__version__}")
    subcommands = parser.add_subcommands(dest="command")
    modules = {name: importlib.import_module(f"lowlabel.cli.{mod}") for name, mod in COMMANDS.items()}
    for module in modules.values():
        module.add_parser(subcommands)

    def _go() -> int:
        cfg = parser.parse_args(argv)
        name = cfg.command
        return int(modules[name].run(cfg[name]) or 0)

    code = run_guarded(_go, debug=debug)
    if argv == [] and code == 0:
        parser.print_help()
    return code


if __name__ == "__main__":
    sys.exit(main())
