"""The layers of docs/architecture.md, enforced: imports only go downwards, no module imports itself back through
others, and the bottom stays torch-free.

    scripts → benchmark, objascale → flip, baselines → segcore → (ext)

Every module of every package is parsed (imports inside functions included) and each edge is checked: no package
edge against the layering, no cycle in the graph of modules (an import inside a function is an edge too: a loop
that only closes at call time is still a loop); a fresh interpreter checks that importing segcore or objascale never
loads torch or a model package, and that `import flip` leaves the environment alone.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"segcore": 0, "flip": 1, "baselines": 1, "benchmark": 2, "objascale": 2}
# what each package may import from the project (its own package always)
ALLOWED = {
    "segcore": set(),
    "flip": {"segcore"},
    "baselines": {"segcore"},
    "benchmark": {"segcore", "flip", "baselines"},
    "objascale": {"segcore"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def edges():
    for pkg in LAYER:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for line, mod in _imports(path):
                top = mod.split(".")[0]
                if top in LAYER and top != pkg:
                    yield pkg, top, f"{path.relative_to(ROOT)}:{line} imports {mod}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).parts)
    parts[-1] = parts[-1].split(".")[0]  # x.py, x.cpython-311-x86_64-linux-gnu.so → x
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(root: Path = ROOT, packages=tuple(LAYER)) -> dict[str, set[str]]:
    """module → the project modules it imports (anywhere in the file). `from X import y` is an edge to X.y when
    that is a module (a compiled extension counts), else to X; relative imports are resolved."""
    files = {_module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    modules = set(files) | {_module_name(p, root) for pkg in packages for p in (root / pkg).rglob("*.so")}

    def known(m: str) -> str | None:
        while m and m not in modules:
            m = m.rpartition(".")[0]
        return m or None

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        out = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out.update(known(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                mod = ".".join(base[:len(base) - node.level + 1] + [node.module] if node.module else
                               base[:len(base) - node.level + 1]) if node.level else node.module
                out.update(f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else known(mod) for a in node.names)
        graph[name] = {m for m in out if m and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each holds at least one import loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_loops_between_modules():
    loops = cycles(module_graph())
    assert not loops, "import loops (each line: modules that import each other, directly or through others):\n" + \
        "\n".join(" ⇄ ".join(c) for c in loops)


def test_the_loop_checker_finds_a_planted_loop(tmp_path):
    """The cycle test can fail: a loop closed by an import inside a function, and one through a package __init__."""
    pkg = tmp_path / "segcore"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
    (pkg / "c.py").write_text("import segcore.d\n")
    (pkg / "d.py").write_text("from segcore import c\n")
    found = cycles(module_graph(tmp_path, ("segcore",)))
    assert sorted(found) == [["segcore.a", "segcore.sub.b"], ["segcore.c", "segcore.d"]]
    (pkg / "sub" / "b.py").write_text("X = 1\n")
    (pkg / "d.py").write_text("Y = 2\n")
    assert cycles(module_graph(tmp_path, ("segcore",))) == []


def test_import_flip_has_no_side_effects():
    """`import flip` neither writes the environment (the wait policy is the entry points' business:
    segcore/waitpolicy.py) nor loads torch."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import sys, os, flip; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "False"]


def test_no_import_crosses_a_boundary_the_wrong_way():
    bad = [where for pkg, top, where in edges() if top not in ALLOWED[pkg]]
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(bad)


def test_scripts_import_only_the_public_packages_and_never_edit_sys_path():
    import re

    edit = re.compile(r"sys\.path\.(insert|append|extend)\(|sys\.path\s*(\+?=)")
    bad = [f"{p.relative_to(ROOT)}" for p in (ROOT / "scripts").glob("*.py") if edit.search(p.read_text())]
    assert not bad, f"scripts that edit sys.path: {bad}"


def test_the_checker_sees_a_back_edge(tmp_path):
    """The contract test can fail: a planted upward import is found."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from benchmark.runner import Runner\n")
    assert _imports(bad) == [(2, "benchmark.runner")]


@pytest.mark.parametrize("module", ["segcore", "segcore.prompt", "segcore.datasets", "segcore.metrics", "segcore.records",
                                    "segcore.hdf5", "segcore.registry", "segcore.hub", "objascale", "objascale.cli",
                                    "objascale.plan", "objascale.config"])
def test_the_bottom_and_the_generator_never_load_torch(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "bad = sorted(m for m in ('torch', 'flip', 'baselines', 'benchmark') if m in sys.modules); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} loaded {out.stdout.strip()}"
