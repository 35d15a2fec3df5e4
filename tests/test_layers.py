"""The layers of ``lowlabel`` point one way (DESIGN.md section 3): no module imports from a higher layer.

Every ``import`` and ``from ... import`` of every module is parsed, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lowlabel"

# Lowest first. A module may import its own layer and the layers below it.
LAYERS: list[tuple[str, ...]] = [
    ("lowlabel", "lowlabel.errors", "lowlabel.structures", "lowlabel.samples"),  # conventions and file formats
    ("lowlabel.data", "lowlabel.metrics", "lowlabel.losses", "lowlabel.models"),  # plain torch/numpy parts
    ("lowlabel.methods",),
    ("lowlabel.engine", "lowlabel.pretrained"),  # the loop, run folders, rebuilding methods from weights
    ("lowlabel.report",),
    ("lowlabel.cli",),
]
LIGHTNING_ALLOWED = ("lowlabel.engine", "lowlabel.cli")
# The package's top-level facade: ``lowlabel.load`` imports lowlabel.pretrained lazily, inside the function.
FACADE = {("lowlabel", "lowlabel.pretrained")}


def layer_of(module: str) -> int:
    """The layer of a dotted module name: the longest prefix listed in :data:`LAYERS`."""
    best, depth = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    if best is None:
        raise KeyError(f"{module} is in no layer of tests/test_layers.py; add it")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from lowlabel.methods import wsss` imports the submodule lowlabel.methods.wsss
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names
                      if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).is_dir()
                      or (PACKAGE.parent / (f"{target}.{alias.name}".replace(".", "/") + ".py")).is_file()]
    return found


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(module_name(path))
        for line, target in imports(path):
            if target.split(".")[0] == "lightning" and not module_name(path).startswith(LIGHTNING_ALLOWED):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports lightning (only the engine and cli may)")
            if (module_name(path), target) in FACADE:
                continue
            if (target == "lowlabel" or target.startswith("lowlabel.")) and layer_of(target) > own:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({LAYERS[own][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]})")
    return bad


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a lazy import of the engine from a model, inside a function, is caught."""
    fake = tmp_path / "lowlabel"
    (fake / "models").mkdir(parents=True)
    (fake / "engine").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("")
    (fake / "engine" / "__init__.py").write_text("")
    (fake / "engine" / "loop.py").write_text("")
    (fake / "models" / "net.py").write_text("def f():\n    from lowlabel.engine import loop\n    import lightning\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    bad = upward_imports()
    assert any("models/net.py:2" in b and "imports lowlabel.engine" in b for b in bad)
    assert any("models/net.py:3 imports lightning" in b for b in bad)
    assert layer_of("lowlabel.models.weights") == 1 and layer_of("lowlabel.pretrained") == 3
