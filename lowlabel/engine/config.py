"""Typed dataclass configs <-> jsonargparse parsers, plain dicts and YAML.

The CLI and the run folder share these helpers, so ``config.yaml`` in a run folder is exactly
what ``lowlabel train <method> --config`` reads back.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

import yaml


def config_to_dict(cfg: Any) -> Any:
    """A dataclass (or nested containers of them) as plain YAML/JSON-safe Python values."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    if isinstance(cfg, enum.Enum):
        return cfg.value
    return cfg


def dump_yaml(cfg: Any) -> str:
    """The config as YAML text, fields in declaration order."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def config_parser(config_cls: type, *, prog: str | None = None, description: str | None = None) -> Any:
    """A jsonargparse parser with ``--config FILE`` and one dotted option per field of ``config_cls``.

    Errors raise ``argparse.ArgumentError`` instead of exiting (``exit_on_error=False``); the CLI
    turns them into one line.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with (some of) the options below.")
    parser.add_class_arguments(config_cls, nested_key=None, fail_untyped=True)
    return parser


def config_from_namespace(config_cls: type, parser: Any, namespace: Any) -> Any:
    """Instantiate ``config_cls`` from a parsed namespace (nested dataclasses included)."""
    init = parser.instantiate(namespace)
    names = [f.name for f in dataclasses.fields(config_cls) if f.init]
    return config_cls(**{name: init[name] for name in names})


def config_from_dict(config_cls: type, values: dict[str, Any], *, source: str = "config") -> Any:
    """Validate ``values`` against ``config_cls`` (types, unknown keys) and instantiate it.

    Raises:
        ValueError: one line naming ``source`` and the offending key.
    """
    import argparse

    parser = config_parser(config_cls)
    try:
        namespace = parser.parse_object(values)
        return config_from_namespace(config_cls, parser, namespace)
    except argparse.ArgumentError as err:
        raise ValueError(f"{source}: {one_line(str(err))}") from err


def load_config_file(config_cls: type, path: Path) -> Any:
    """Read a YAML config file (e.g. a run's ``config.yaml``) into ``config_cls``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(values).__name__}")
    return config_from_dict(config_cls, values, source=str(path))


def one_line(message: str) -> str:
    """Collapse a multi-line message (jsonargparse's nested explanations) into one line."""
    parts = [p.strip() for p in message.strip().splitlines() if p.strip()]
    return " ".join(parts)
