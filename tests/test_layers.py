"""The package's architecture as a test: imports run one way, private names stay private.

Layers, bottom to top (README "Layout"): a module may import from its own top-level
package and from layers below it, never from a layer above or beside it, not even
lazily inside a function.  No module, test or benchmark imports or uses a private name
(one leading underscore) of another dmixed module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dmixed"

#: top-level part of dmixed → its rank (a lower rank never imports a higher one;
#: parts of equal rank do not import each other)
LAYERS = {
    "errors": 0,
    "files": 1,
    "stats": 2,
    "kernels": 3,
    "design": 3,
    "engines": 4,
    "fit": 5,
    "inference": 6,
    "io": 7,
    "results": 8,
    "model": 9,
    "cluster": 10,
    "job": 11,
    "input_data": 12,
    "cli": 13,
    "__init__": 14,
    "__main__": 15,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _part(module: str) -> str:
    """``dmixed.engines.dask.graph`` → ``engines``; ``dmixed`` itself → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path):
    """(imported dmixed module, imported names, line) of every import in ``path``."""
    module = _module_name(path) if path.is_relative_to(PACKAGE) else ""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dmixed":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, path.name == "__init__.py")
            if target.split(".")[0] == "dmixed":
                yield target, [a.name for a in node.names], node.lineno


def _package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(_module_name(p)) for p in _package_files()}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("path", _package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    here = _part(_module_name(path))
    wrong = []
    for target, names, line in _imports(path):
        if target == "dmixed" and names:
            # ``from dmixed import x`` / ``from .. import x``: x is a part (or a name of
            # the package root, which only the top may use)
            for name in names:
                there = name if name in LAYERS else "__init__"
                if there != here and LAYERS[there] >= LAYERS[here]:
                    wrong.append(f"line {line}: imports {name} ({there}) from {here}")
            continue
        there = _part(target)
        if there != here and LAYERS[there] >= LAYERS[here]:
            wrong.append(f"line {line}: imports {target} ({there}) from {here}")
    assert not wrong, "\n".join(wrong)


def _dmixed_module_aliases(tree: ast.AST, path: Path) -> set[str]:
    """Local names bound to dmixed modules in a test or benchmark file."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dmixed":
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dmixed"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                candidate = ROOT / Path(*full.split("."))
                if candidate.with_suffix(".py").exists() or candidate.is_dir():
                    aliases.add(alias.asname or alias.name)
    return aliases


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for target, names, line in _imports(path):
        here = _module_name(path) if path.is_relative_to(PACKAGE) else None
        if here is not None and target == here:
            continue
        found += [f"line {line}: imports {n} from {target}" for n in names if _is_private(n)]
    if path.is_relative_to(PACKAGE):
        return found
    aliases = _dmixed_module_aliases(tree, path)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _is_private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"line {node.lineno}: uses {node.value.id}.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in aliases
            and isinstance(node.args[1], ast.Constant)
            and _is_private(str(node.args[1].value))
        ):
            found.append(f"line {node.lineno}: patches {node.args[0].id}.{node.args[1].value}")
    return found


def _all_files() -> list[Path]:
    files = _package_files()
    for folder in ("tests", "benchmarks", "examples"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


@pytest.mark.parametrize("path", _all_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_of_another_module(path):
    found = _private_uses(path)
    assert not found, "\n".join(found)


def test_import_leaves_heavy_dependencies_for_later():
    """``import dmixed`` (the in-process path's first cost in a fresh process) imports
    neither scipy, Dask, distributed nor numba: each is imported where it is used."""
    import subprocess
    import sys

    code = (
        "import sys, dmixed; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'scipy', 'dask', 'distributed', 'numba'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_and_results_leave_scipy_stats_for_later():
    """The command line's start (``dmixed --version``, ``dmixed show``) and the results'
    modules do not import ``scipy.stats`` (about a second in a fresh process): the
    multiple-testing corrections import it where the FDR methods use it."""
    import subprocess
    import sys

    code = (
        "import sys, dmixed.cli, dmixed.results.results, dmixed.results.hypotheses; "
        "print('scipy.stats' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_small_fit_leaves_scipy_sparse_for_later():
    """A small in-process fit (``y ~ x``, a random intercept, arrays in) runs no sparse
    path, so no kernels module imports scipy.sparse: they import it only once a wide
    factor's thresholds are met (every process that fits, and every Dask worker, pays
    for the import otherwise).  A finder records the modules on the stack when
    scipy.sparse is first imported (a results module that imports scipy.stats may still
    load it; the kernels must not)."""
    import subprocess
    import sys

    code = """
import sys

class Record:
    stack = None

    def find_spec(self, name, path=None, target=None):
        if name == "scipy.sparse" and Record.stack is None:
            f, Record.stack = sys._getframe(1), []
            while f is not None:
                Record.stack.append(f.f_globals.get("__name__", ""))
                f = f.f_back
        return None

sys.meta_path.insert(0, Record())
import numpy as np
import dmixed
rng = np.random.default_rng(0)
n = 2000
x = np.column_stack([np.ones(n), rng.normal(size=n)])
g = rng.integers(0, 50, n)
y = x[:, 1] + rng.normal(size=g.max() + 1)[g] + rng.normal(size=n)
dmixed.MixedLM(y, x, g).fit()
print(sorted({m for m in Record.stack or [] if m.startswith("dmixed.kernels")}))
print("scipy.sparse" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # and since the results' modules leave scipy.stats for later, nothing else loads it
    assert out.stdout.split() == ["[]", "False"]
