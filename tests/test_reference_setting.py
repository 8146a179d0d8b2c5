"""The one reference setting (tests/reference.py, tests/conftest.py): FLIP_REFERENCE_DIR, the `reference` marker,
and CI's developer pass, where a reference test that cannot run, or skips for any reason, is a failure.
Checked on a copy of the test configuration in a temporary folder (no ../shared beside it), in subprocesses."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import reference

HERE = Path(__file__).resolve().parent

CASES = '''
import pytest

from . import reference


def test_plain():
    pass


@pytest.mark.reference("onnx")
def test_needs_onnx():
    assert reference.onnx_path().name == "flip-tiny-fused.onnx"


@pytest.mark.reference
def test_skips_inside():
    pytest.skip("something else is missing")
'''


def _outcome(tmp_path, **env) -> dict:
    """Run the three cases with this environment: exit code and pytest's output."""
    proj = tmp_path / "proj"
    if not proj.exists():
        (proj / "tests").mkdir(parents=True)
        for name in ("__init__.py", "conftest.py", "reference.py"):
            shutil.copy(HERE / name, proj / "tests" / name)
        (proj / "tests" / "test_cases.py").write_text(CASES)
        (proj / "pytest.ini").write_text("[pytest]\nmarkers =\n    reference: needs the reference\n")
    full = {k: v for k, v in os.environ.items() if k not in ("CI", reference.ENV)}
    full.update(env)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "tests"], cwd=proj,
                         env=full, capture_output=True, text=True, timeout=300)
    return {"rc": res.returncode, "stdout": res.stdout}


@pytest.fixture
def fake_reference(tmp_path):
    d = tmp_path / "ref"
    (d / "authors-sampler").mkdir(parents=True)
    (d / "flip-tiny-fused.onnx").write_bytes(b"x")
    return d


def test_without_ci_a_missing_reference_skips(tmp_path):
    r = _outcome(tmp_path, **{reference.ENV: str(tmp_path / "absent")})
    assert r["rc"] == 0, r["stdout"]
    assert "2 skipped" in r["stdout"] and "1 passed" in r["stdout"]


def test_ci_developer_pass_fails_when_the_reference_is_missing(tmp_path):
    for env in ({reference.ENV: str(tmp_path / "absent")}, {}):  # a wrong folder; unset with no ../shared beside
        r = _outcome(tmp_path, CI="true", **env)
        assert r["rc"] != 0, r["stdout"]
        assert "1 passed" in r["stdout"] and "2 errors" in r["stdout"], r["stdout"]
        assert "CI=true: a test that needs the reference must run" in r["stdout"]


def test_ci_user_pass_hides_the_reference(tmp_path, fake_reference):
    r = _outcome(tmp_path, CI="true", **{reference.ENV: "none"})
    assert r["rc"] == 0 and "2 skipped" in r["stdout"] and "1 passed" in r["stdout"], r["stdout"]


def test_ci_developer_pass_with_the_reference_runs_it_and_fails_any_skip(tmp_path, fake_reference):
    r = _outcome(tmp_path, CI="true", **{reference.ENV: str(fake_reference)})
    assert r["rc"] != 0
    assert "2 passed" in r["stdout"] and "1 failed" in r["stdout"], r["stdout"]
    assert "reference test skipped under CI=true (Skipped: something else is missing)" in r["stdout"]
    r = _outcome(tmp_path, **{reference.ENV: str(fake_reference)})  # not CI: a skip stays a skip
    assert r["rc"] == 0 and "2 passed" in r["stdout"] and "1 skipped" in r["stdout"], r["stdout"]
