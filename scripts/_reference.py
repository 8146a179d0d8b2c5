"""The authors' reference files for scripts: tests/reference.py (the one FLIP_REFERENCE_DIR setting), loaded by path.

Scripts run as `python scripts/<name>.py` (this folder is sys.path[0]) and never edit sys.path, so they import this
shim (`from _reference import reference`) instead of the tests package.
"""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("flip_suite_reference", Path(__file__).resolve().parents[1] / "tests" / "reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)
