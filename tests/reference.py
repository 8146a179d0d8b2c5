"""The authors' reference files for parity tests and scripts: one setting, FLIP_REFERENCE_DIR.

FLIP_REFERENCE_DIR names a folder holding `flip-tiny-fused.onnx` (the authors' FLIP-Tiny, their docs/flipencoder.onnx)
and `authors-sampler/` (their sampler sources `ext/`, `golden.npz`, `counts.json`). Product code never reads it.

  unset    tests/conftest.py fills it with <repo>/../shared/reference when that folder exists (this project's
           development setup); scripts get the same default through `reference_dir()`
  none     the reference is hidden: tests run exactly as on a fresh clone (CI's user pass)
  a path   that folder

Tests that need a file mark themselves `@pytest.mark.reference` (or `pytestmark`); tests/conftest.py skips them with
the reason when the reference is absent, and under CI=true (unless FLIP_REFERENCE_DIR=none) turns such a skip into a
failure, so parity can never vanish silently.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "FLIP_REFERENCE_DIR"
HIDDEN = "none"
REPO = Path(__file__).resolve().parents[1]
DEVELOPMENT_DEFAULT = REPO.parent / "shared" / "reference"
ONNX_NAME = "flip-tiny-fused.onnx"


def hidden() -> bool:
    return os.environ.get(ENV, "").strip().lower() == HIDDEN


def reference_dir() -> Path | None:
    """The reference folder, or None when it is hidden or absent."""
    if hidden():
        return None
    value = os.environ.get(ENV, "").strip()
    p = Path(value).expanduser() if value else DEVELOPMENT_DEFAULT
    return p if p.is_dir() else None


def fill_default() -> None:
    """conftest: FLIP_REFERENCE_DIR := ../shared/reference when unset and that folder exists (subprocesses inherit it)."""
    if not os.environ.get(ENV, "").strip() and DEVELOPMENT_DEFAULT.is_dir():
        os.environ[ENV] = str(DEVELOPMENT_DEFAULT)


def _file(*parts: str) -> Path | None:
    d = reference_dir()
    p = d.joinpath(*parts) if d is not None else None
    return p if p is not None and p.exists() else None


def onnx_path() -> Path | None:
    """The authors' fused FLIP-Tiny ONNX, or None."""
    return _file(ONNX_NAME)


def sampler_dir() -> Path | None:
    """authors-sampler/ (ext/, golden.npz, counts.json), or None."""
    return _file("authors-sampler")


def sampler_sources() -> Path | None:
    return _file("authors-sampler", "ext")


def missing_reason(what: str = "the authors' reference files") -> str:
    if hidden():
        return f"{what}: reference hidden ({ENV}={HIDDEN})"
    value = os.environ.get(ENV, "").strip()
    where = value or f"{DEVELOPMENT_DEFAULT} (default)"
    return (f"{what} not found: {ENV} = {where}; set {ENV} to a folder with {ONNX_NAME} and authors-sampler/")


def require(path: Path | None, what: str) -> Path:
    """For scripts: the path, or SystemExit with the one way to provide it."""
    if path is None:
        raise SystemExit(missing_reason(what))
    return path


def install_in_cache(cache: Path) -> Path:
    """Put the authors' ONNX into a weights cache exactly as a user would (cache/flip/flip-tiny-fused.onnx, a symlink)."""
    src = onnx_path()
    if src is None:
        raise FileNotFoundError(missing_reason(ONNX_NAME))
    dest = Path(cache) / "flip" / ONNX_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        dest.symlink_to(src.resolve())
    return dest
