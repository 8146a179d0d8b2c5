"""The backend is the caller's choice and the records say which one ran: `--backend torch` and `--backend onnxruntime`
each leave their backend, with the torch and onnxruntime versions, in every record and in run.json. And the CLI
answers --help and --list-models without loading torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import BACKENDS as CLI_BACKENDS
from benchmark.cli import main as cli_main
from segcore.records import read_rows
from segcore.segmenter import BACKENDS
from tests.fixtures import make_coco_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_offers_the_protocols_backends():
    assert CLI_BACKENDS == BACKENDS


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_records_and_run_json_say_which_backend_ran(tmp_path, backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    pytest.importorskip("flip._fovea", reason="C fovea sampler extension not built (python setup.py build_ext --inplace)")
    import onnxruntime
    import torch

    data = make_coco_dataset(tmp_path / "ds", n_images=2, objects_per_image=2)
    rc = cli_main(["--model", "flip-tiny", "--weights", "random", "--data", str(data), "--backend", backend,
                   "--device", "cpu", "--results", str(tmp_path / "r"), "--run", "run", "--no-progress", "--no-latest",
                   "--no-report", "--warmup", "0", "--no-boundary"])
    assert rc == 0
    rows = read_rows(tmp_path / "r" / "run")
    assert rows and all(r["status"] == "ok" for r in rows)
    assert {r["backend"] for r in rows} == {backend}
    assert {r["torch_version"] for r in rows} == {torch.__version__}
    assert {r["onnxruntime_version"] for r in rows} == {onnxruntime.__version__}
    meta = json.loads((tmp_path / "r" / "run" / "run.json").read_text())
    (model,) = meta["models"].values()
    assert model["backend"] == backend and model["torch_version"] == torch.__version__
    assert meta["settings"]["backend"] == backend


def test_a_backend_a_model_cannot_run_is_a_configuration_error(tmp_path, capsys):
    data = make_coco_dataset(tmp_path / "ds", n_images=1, objects_per_image=1)
    rc = cli_main(["--model", "flip-tiny", "--weights", "random", "--data", str(data), "--backend", "onnxruntime",
                   "--device", "meta", "--results", str(tmp_path / "r"), "--no-progress", "--no-report", "--warmup", "0"])
    assert rc == 2 and "onnxruntime" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("run.json"))


@pytest.mark.parametrize("args", [["--help"], ["--list-models"]])
def test_help_and_list_models_load_no_torch(args):
    code = ("import runpy, sys\n"
            f"sys.argv = ['benchmark', *{args!r}]\n"
            "try:\n    runpy.run_module('benchmark', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'onnxruntime', 'flip.modeling.flip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"
    if args == ["--list-models"]:
        assert "flip-tiny-h.authors" in out.stdout and "sam-b.official" in out.stdout
