"""pyproject.toml: each dependency sits where it is used (DESIGN.md section 6).

Core = what ``lowlabel/`` imports (lazy imports included); ``dev`` = what only the tests and benchmarks import;
any other extra must be imported by the package and not already be core.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Needed without a direct import: torch.utils.tensorboard (engine/logging.py) imports the tensorboard package.
INDIRECT = {"tensorboard"}
# Imported only behind importlib.util.find_spec and documented as not a dependency (infer.refine crf).
OPTIONAL = {"pydensecrf"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req.strip())
    assert match, req
    return _norm(match.group(0))


def imported_distributions(*folders: str) -> set[str]:
    """Distributions of the third-party top-level modules imported anywhere under ``folders``."""
    modules: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"lowlabel", "tests", "benchmarks", "__future__"} | OPTIONAL
    owners = importlib.metadata.packages_distributions()
    missing = sorted(m for m in modules if m not in owners)
    assert not missing, f"imported but not installed in this environment: {missing}"
    return {_norm(owners[m][0]) for m in modules}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def extras_of_the_package() -> set[str]:
    """The distributions of the extras other than ``dev`` (``export``: imported by lowlabel/ only when used)."""
    extras = project()["optional-dependencies"]
    return {_requirement_name(r) for name, reqs in extras.items() if name != "dev" for r in reqs}


def test_core_dependencies_are_exactly_what_the_package_imports() -> None:
    core = {_requirement_name(r) for r in project()["dependencies"]}
    used = imported_distributions("lowlabel") | INDIRECT
    assert core - used == set(), "core dependencies that lowlabel/ never imports"
    assert used - core - extras_of_the_package() == set(), "lowlabel/ imports these without declaring them"


def test_dev_holds_what_only_tests_and_benchmarks_import() -> None:
    extras = project()["optional-dependencies"]
    core = {_requirement_name(r) for r in project()["dependencies"]}
    dev = {_requirement_name(r) for r in extras["dev"]}
    test_only = imported_distributions("tests", "benchmarks") - core
    assert test_only - dev == set(), "tests/benchmarks import these, but dev does not install them"
    assert dev & core == set(), "dev repeats core dependencies"
    for name, reqs in extras.items():
        if name == "dev":
            continue
        names = {_requirement_name(r) for r in reqs}
        assert not names & core, f"extra {name!r} repeats core dependencies {sorted(names & core)}"
        assert names & imported_distributions("lowlabel"), f"extra {name!r}: nothing in lowlabel/ imports it"
