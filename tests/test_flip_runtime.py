"""The thread policy (segcore/waitpolicy.py for the entry points, flip/runtime.py for inference): env default only,
applied by the entry points before torch loads, no lasting global torch state, chunk-parallel decoding gives the same
logits as one thread."""
import os
import threading

import numpy as np
import pytest
import torch

import flip
from flip import runtime
from segcore import waitpolicy
from flip.modeling import TokenBatch
from flip.predictor import FlipPredictor
from segcore.prompt import Prompt

from .flip_testutil import SIZES, allocation, crop_patches, position, synthetic_image


def test_wait_policy_is_a_default_the_user_can_override(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    waitpolicy.apply_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    waitpolicy.apply_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("entry", ["benchmark/__main__.py", "flip/training/__main__.py"])
def test_entry_points_apply_the_policy_first(entry):
    """Each __main__ calls apply_wait_policy before any other import (so before torch loads)."""
    import ast
    from pathlib import Path

    body = ast.parse((Path(__file__).resolve().parents[1] / entry).read_text()).body
    body = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]  # docstring
    assert isinstance(body[0], ast.ImportFrom) and body[0].module == "segcore.waitpolicy"
    assert isinstance(body[1], ast.Expr) and body[1].value.func.id == "apply_wait_policy"


def test_the_benchmark_entry_point_sets_the_policy_before_torch():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import runpy, sys; sys.argv = ['benchmark', '--help']\n"
            "try:\n    runpy.run_module('benchmark', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import os, segcore.waitpolicy as w; print(os.environ['OMP_WAIT_POLICY'], w.wait_policy_status()['set_before_torch'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out[-2:] == ["PASSIVE", "True"]


def test_parallel_map_order_errors_and_modes():
    assert runtime.parallel_map(lambda x: x * x, range(50), 3) == [x * x for x in range(50)]
    with pytest.raises(ZeroDivisionError):
        runtime.parallel_map(lambda x: 1 // (x - 7), range(20), 2)
    with torch.inference_mode():
        seen = runtime.parallel_map(lambda _: (torch.is_inference_mode_enabled(), threading.get_ident()), range(40), 2)
    assert all(s[0] for s in seen)


def test_intra_op_threads_restores():
    before = torch.get_num_threads()
    with runtime.intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = flip.create_model("flip-tiny").eval()
    return m


def test_chunk_parallel_decoder_matches_one_thread(model):
    rng = np.random.default_rng(0)
    img = synthetic_image()
    mu = np.array([150.0, 120.0])
    P, C = crop_patches(img, mu, 20.0, allocation(20.0), rng)
    pos = position(mu, 20.0, 20.0, 0.0, 1.0, img.shape[1], img.shape[0])
    batch = TokenBatch.from_objects([P], [C], pos[None], SIZES)
    coords = torch.from_numpy(rng.uniform(-1, 1, (20000, 2)).astype(np.float32))
    with torch.inference_mode():
        cache = model.encode(batch)
        one = model.decode(cache, coords, [20000], chunk=2048, workers=1)
        two = model.decode(cache, coords, [20000], chunk=2048, workers=2)
    torch.testing.assert_close(two, one, atol=1e-4, rtol=1e-5)


def test_predictor_threads_never_set_globally(model):
    img = synthetic_image(200, 240)
    yy, xx = np.mgrid[0:200, 0:240]
    prompt = Prompt.from_mask((xx - 120) ** 2 + (yy - 90) ** 2 < 70 ** 2)
    before = torch.get_num_threads()
    masks = {}
    for t in (1, 2):
        pred = FlipPredictor(model, device="cpu", threads=t, seed=3)
        assert torch.get_num_threads() == before
        pred.set_image(img)
        masks[t] = pred.predict([prompt])[0]
        assert torch.get_num_threads() == before
    assert (masks[1] != masks[2]).mean() < 1e-3  # same model, same patches: only fp rounding of chunking may differ
