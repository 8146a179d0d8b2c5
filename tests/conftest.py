"""Shared test fixtures. Every test leaves torch's global state (threads, RNG) as it found it.

Environment, set before any test module is imported (subprocesses inherit it):
  FLIP_REFERENCE_DIR  filled from ../shared/reference when unset (tests/reference.py); `none` hides it
  FLIP_SUITE_CACHE    an empty folder of this session: no test reads or writes the user's weights cache, so a
                      name resolves as on a fresh clone unless a test puts a file into the cache itself
Tests marked `reference` need the authors' files: skipped with the reason when absent, a failure under CI=true
(unless FLIP_REFERENCE_DIR=none, CI's user pass).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

from . import reference

reference.fill_default()
_SESSION_CACHE = tempfile.mkdtemp(prefix="flip-suite-test-cache-")
os.environ["FLIP_SUITE_CACHE"] = _SESSION_CACHE
os.environ.pop("FLIP_SUITE_DOWNLOAD", None)  # nothing in the suite downloads unless a test says so


def reference_required() -> bool:
    """CI's developer pass: CI=true and the reference not explicitly hidden."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes") and not reference.hidden()


def _reference_missing(item) -> str | None:
    """The reason a `reference` test cannot run here, or None. marker args: "onnx", "sampler" (default: both)."""
    marker = item.get_closest_marker("reference")
    needs = set(marker.args) or {"onnx", "sampler"}
    found = {"onnx": reference.onnx_path(), "sampler": reference.sampler_dir()}
    missing = sorted(k for k in needs if found.get(k) is None)
    return reference.missing_reason("the authors' " + " and ".join(missing)) if missing else None


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def pytest_runtest_setup(item):
    if item.get_closest_marker("reference") is None:
        return
    why = _reference_missing(item)
    if why is None:
        return
    if reference_required():
        pytest.fail(f"{why}. CI=true: a test that needs the reference must run (FLIP_REFERENCE_DIR=none runs the "
                    "suite as a user, without it)", pytrace=False)
    pytest.skip(why)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI's developer pass a reference test that skips for any reason (a skip marker, pytest.skip inside,
    a missing extension) is a failure."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and item.get_closest_marker("reference") is not None \
            and reference_required():
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"reference test skipped under CI=true ({reason}): parity must not vanish silently"


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Library code must not change torch's global threads or RNG; a test that does is undone here."""
    torch = sys.modules.get("torch")
    if torch is None:  # tests that never load torch pay nothing
        yield
        return
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


@pytest.fixture
def coco_dataset(tmp_path):
    """A small seeded COCO-format dataset folder (see tests/fixtures.py)."""
    from .fixtures import make_coco_dataset

    return make_coco_dataset(tmp_path / "coco", n_images=3, objects_per_image=3, seed=0)


@pytest.fixture
def authors_cache(tmp_path, monkeypatch):
    """A weights cache holding the authors' fused ONNX, placed there as a user would (for `reference` tests)."""
    cache = tmp_path / "weights-cache"
    reference.install_in_cache(cache)
    monkeypatch.setenv("FLIP_SUITE_CACHE", str(cache))
    return cache
