"""The layers of docs/architecture.md, enforced: imports only go downwards, and the bottom stays torch-free.

    scripts → benchmark, objascale → flip, baselines → segcore → (ext)

Every module of every package is parsed (imports inside functions included) and each edge is checked; a
fresh interpreter checks that importing segcore or objascale never loads torch or a model package.
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
