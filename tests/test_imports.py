"""The package's import graph: no module shadows an exported function, imports point down only (no cycles).

Regression: after ``import iotaudit.audit`` (``reports.load_inputs`` did it),
``iotaudit.audit(...)`` raised ``TypeError: 'module' object is not callable``;
the same held for ``coverage``, ``collect`` and ``drift`` (STYLE.md lesson 11).
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import iotaudit

PACKAGE_DIR = Path(iotaudit.__file__).parent


def _modules() -> list[str]:
    """Every module of the package (``iotaudit.x``, ``iotaudit.pkg.y``), found on disk."""
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="iotaudit.")
                  if not m.name.endswith("__main__"))


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_no_module_shares_a_name_with_an_exported_name() -> None:
    leaves = {name.rsplit(".", 1)[-1] for name in _modules()}
    assert not leaves & set(iotaudit.__all__), "a module named like an exported function shadows it once imported"


@pytest.mark.slow
def test_exported_functions_stay_functions_after_every_submodule_is_imported() -> None:
    code = f"""
import importlib, json, types
import iotaudit
for name in {_modules()!r}:
    importlib.import_module(name)
bad = sorted(n for n in iotaudit.__all__ if isinstance(getattr(iotaudit, n), types.ModuleType))
print(json.dumps({{"bad": bad, "audit": callable(iotaudit.audit), "coverage": callable(iotaudit.coverage),
                  "collect": callable(iotaudit.collect), "drift": callable(iotaudit.drift)}}))
"""
    found = json.loads(_run(code))
    assert found == {"bad": [], "audit": True, "coverage": True, "collect": True, "drift": True}


def test_audit_is_callable_after_its_module_is_imported() -> None:
    import iotaudit.auditing  # what reports.load_inputs does
    import iotaudit.root_coverage

    assert iotaudit.audit is iotaudit.auditing.audit and callable(iotaudit.audit)
    assert iotaudit.coverage is iotaudit.root_coverage.coverage


def _local_imports(path: Path, module: str) -> set[str]:
    """Modules of the package that ``module`` imports at any level except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("iotaudit.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("iotaudit"):
                continue
            for alias in node.names:  # `from . import x` imports the submodule x
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE_DIR.parent / (sub.replace(".", "/") + ".py")).exists()
                          or (PACKAGE_DIR.parent / sub.replace(".", "/")).is_dir() else target)
    return {m for m in found if m != module and m != "iotaudit"}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name in _modules():
        rel = name.replace(".", "/")
        path = PACKAGE_DIR.parent / (rel + ".py")
        if not path.exists():
            path = PACKAGE_DIR.parent / rel / "__init__.py"
        graph[name] = _local_imports(path, name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_point_down_only() -> None:
    graph = _graph()
    assert graph["iotaudit.inventory"] and "iotaudit.pinning" not in graph["iotaudit.inventory"]
    assert _cycles(graph) == []


def test_the_analyses_share_the_lower_modules_and_not_each_other() -> None:
    graph = _graph()
    for analysis in ("iotaudit.root_coverage", "iotaudit.expiry", "iotaudit.pinning"):
        assert {"iotaudit.paths", "iotaudit.profiles"} <= graph[analysis], analysis
        assert not graph[analysis] & {"iotaudit.root_coverage", "iotaudit.expiry", "iotaudit.pinning"}, analysis
    for lower in ("iotaudit.stacks", "iotaudit.paths", "iotaudit.profiles", "iotaudit.pins", "iotaudit.hypothetical"):
        assert not graph[lower] & {"iotaudit.root_coverage", "iotaudit.expiry", "iotaudit.pinning",
                                   "iotaudit.inventory", "iotaudit.auditing"}, lower


def test_the_cycle_detector_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Each module imported first (so its own import order runs), then all others forward and backward."""
    names = _modules()
    code = f"""
import importlib, sys
names = {names!r}
first = sys.argv[1]
importlib.import_module(first)
for name in names:
    importlib.import_module(name)
for name in reversed(names):
    importlib.import_module(name)
"""
    failures = []
    for name in names:
        done = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode:
            failures.append((name, done.stderr.strip().splitlines()[-1:]))
    assert failures == []
