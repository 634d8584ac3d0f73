"""The library's shape (issue "One house"): no Streamlit, no import cycle, small modules,
local imports only for heavy or optional dependencies. Read from the source with ``ast``, so a
violation names the file and line."""

from __future__ import annotations

import ast
import doctest
import graphlib
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
PKG = "lelp_studio"
MAX_LINES = 600
# Third-party packages that take a noticeable time to import (or are optional extras): a
# module that imports one of them at its top is "heavy", and so is every module importing it.
HEAVY = (
    "torch", "transformers", "sklearn", "umap", "scipy", "pandas", "pyarrow", "plotly",
    "onnx", "onnxruntime", "onnxscript", "ray", "datasets", "safetensors",
)  # fmt: skip


def _modules() -> dict[str, Path]:
    """Dotted name -> file for every module of the library."""
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(CORE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PKG, *parts])] = path
    return out


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(target library module, line, at module level) for each import of our own code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for n in tree.body:  # `if TYPE_CHECKING:` / try blocks at module level count as top level
        if isinstance(n, ast.If | ast.Try):
            top |= {id(c) for c in ast.walk(n)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            names = [f"{target}.{a.name}" for a in node.names]
            hits = [n for n in names if n in mods] or ([target] if target in mods else [])
        elif isinstance(node, ast.Import):
            hits = [a.name for a in node.names if a.name in mods]
        else:
            continue
        found += [(h, node.lineno, id(node) in top) for h in hits]
    return found


def test_library_imports_no_streamlit() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        f"import {PKG}\n"
        f"for m in pkgutil.walk_packages({PKG}.__path__, '{PKG}.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for path in CORE.rglob("*.py"):
        assert "import streamlit" not in path.read_text(encoding="utf-8"), path


def test_import_graph_has_no_cycle() -> None:
    mods = _modules()
    graph = {m: {t for t, _, _ in _imports(m, p, mods) if t != m} for m, p in mods.items()}
    # A package's __init__ re-exports its submodules; an edge to the package is an edge to it.
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_packages_depend_one_way() -> None:
    """Between top-level packages too (teachers -> store, never store -> teachers)."""
    mods = _modules()
    top = {}
    for m, p in mods.items():
        src = m.split(".")[1] if m != PKG else PKG
        for t, _, _ in _imports(m, p, mods):
            dst = t.split(".")[1] if t != PKG else PKG
            if dst != src:
                top.setdefault(src, set()).add(dst)
    try:
        list(graphlib.TopologicalSorter(top).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"package cycle: {' -> '.join(err.args[1])}")


def _heavy_modules(mods: dict[str, Path]) -> set[str]:
    """Library modules whose import (at module level, transitively) loads a HEAVY package."""
    direct, edges = set(), {}
    for m, p in mods.items():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n.split(".")[0] in HEAVY for n in names):
                direct.add(m)
        edges[m] = {t for t, _, top in _imports(m, p, mods) if top}
    heavy, changed = set(direct), True
    while changed:
        changed = False
        for m, targets in edges.items():
            if m not in heavy and targets & heavy:
                heavy.add(m)
                changed = True
    return heavy


def test_local_imports_are_only_for_heavy_dependencies() -> None:
    """A function may import our own module late only when that module is slow to import
    (it loads torch, pandas, ...): ``lelp --help`` and the job runner stay quick. Anything
    else goes at the top, where the import graph is visible."""
    mods = _modules()
    heavy = _heavy_modules(mods)
    assert {f"{PKG}.train", f"{PKG}.pipeline"} <= heavy and f"{PKG}.config" not in heavy
    bad = []
    for m, p in mods.items():
        bad += [
            f"{p.relative_to(CORE.parent)}:{line} imports {t}"
            for t, line, at_top in _imports(m, p, mods)
            if not at_top and t not in heavy
        ]
    assert not bad, "local imports of light library modules:\n" + "\n".join(bad)


def test_every_relative_import_resolves() -> None:
    """``from .x import y`` inside a package must name a module of the library (a moved
    module's stale relative import only fails when its function first runs)."""
    mods = _modules()
    bad = []
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                target = _resolve(m, p, node)
                if target not in mods:
                    bad.append(f"{p.relative_to(CORE.parent)}:{node.lineno} from {target}")
    assert not bad, "relative imports of modules that do not exist:\n" + "\n".join(bad)


def test_modules_are_small() -> None:
    big = {
        str(p.relative_to(CORE.parent)): n
        for p in CORE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_package_inits_only_name_their_api() -> None:
    """A subpackage's __init__ re-exports; it defines no functions or classes of its own."""
    for init in CORE.rglob("__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        defs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defs, f"{init}: defines {defs}"


def test_architecture_doc_examples_run() -> None:
    """docs/ARCHITECTURE.md's examples (adding an objective, the one subclass path) run."""
    doc = CORE.parent / "docs" / "ARCHITECTURE.md"
    result = doctest.testfile(str(doc), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


@pytest.mark.parametrize(
    "module", [f"{PKG}.objectives", f"{PKG}.store.schema", f"{PKG}.store.choices"]
)
def test_module_doc_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
