"""Per-object seeds come from identity, never batch position (issue 10 item 3): an object predicted alone equals the
same object predicted third in a batch, and a benchmark run killed mid-image and resumed gives exactly the records
of an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import flip
from flip.predictor import FlipPredictor, object_seed
from segcore.prompt import Prompt

from .fixtures import make_coco_dataset, random_shapes

pytest.importorskip("flip._fovea", reason="C fovea sampler not built")
ROOT = Path(__file__).resolve().parents[1]


def test_object_seed_is_a_32_bit_function_of_run_seed_and_identity():
    s = object_seed(0, "img7/3")
    assert s == object_seed(0, "img7/3") and 0 <= s < 2**32
    assert len({s, object_seed(1, "img7/3"), object_seed(0, "img7/4"), object_seed(0, "img3/7")}) == 4
    m = np.zeros((20, 30), bool)
    m[5:9, 4:12] = True
    a, b = Prompt.from_mask(m, image_id="x", object_id=2), Prompt.from_mask(m, image_id="x", object_id=2)
    assert a.identity() == b.identity() == "x/2"
    assert Prompt.from_mask(m).identity() == Prompt.from_mask(m.copy()).identity() != a.identity()


@pytest.mark.parametrize("rule", ["authors", "exact"])
@pytest.mark.parametrize("with_ids", [True, False])
def test_alone_equals_third_in_a_batch(rule, with_ids):
    rng = np.random.default_rng(5)
    h, w = 120, 150
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    masks = [m for m in random_shapes(rng, h, w, 6) if m.any()][:5]
    assert len(masks) >= 4
    ids = [dict(image_id="im", object_id=k) if with_ids else {} for k in range(len(masks))]
    prompts = [Prompt.from_mask(m, **kw) for m, kw in zip(masks, ids)]
    pred = FlipPredictor(flip.create_model("flip-tiny"), seed=3, convention="per-axis", sampler_compat=rule, device="cpu")
    pred.set_image(img)
    batch = pred.predict(prompts)
    batch_tokens = list(pred.last_tokens)
    target = prompts[2]
    alone = pred.predict([target])
    assert pred.last_tokens == [batch_tokens[2]] and batch_tokens[2] > 0
    assert np.array_equal(alone[0], batch[2])
    # and in another order, third again but with different neighbours
    shuffled = pred.predict([prompts[4], prompts[0], target, prompts[1]])
    assert pred.last_tokens[2] == batch_tokens[2] and np.array_equal(shuffled[2], batch[2])


_RUN = textwrap.dedent("""
    import sys, time
    from benchmark.runner import RunConfig, Runner
    import segcore.records as records
    slow = sys.argv[4] == "slow"
    if slow:  # stretch the run so the parent can kill it between part files (the kill itself is real)
        real = records.write_csv
        def write_csv(path, rows):
            real(path, rows)
            time.sleep(3)
        records.write_csv = write_csv
    cfg = RunConfig(models=["flip-tiny.project"], weights=sys.argv[1], datasets=[sys.argv[2]], run_dir=sys.argv[3],
                    threads=1, warmup=0, flush_every=1, progress=False, seed=7)
    Runner(cfg).run()
""")


def _run(args, env, slow=False, kill_after_first_part=False):
    cmd = [sys.executable, "-c", _RUN, *map(str, args), "slow" if slow else "fast"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not kill_after_first_part:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        return
    parts = Path(args[2]) / "records"
    deadline = time.monotonic() + 300
    while not (parts.is_dir() and list(parts.glob("part-*.csv"))):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no part file appeared"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_killed_mid_image_and_resumed_equals_uninterrupted(tmp_path):
    from flip.training.checkpoint import export_weights
    from segcore.records import read_rows

    weights = tmp_path / "w.pt"  # a project file (IoU is reported for project weights, not for random ones)
    export_weights(flip.create_model("flip-tiny").state_dict(), weights, name="flip-tiny", model_config={},
                   meta={"convention": "per-axis", "sampler_compat": "authors"}, half=False)
    data = make_coco_dataset(tmp_path / "coco", n_images=2, objects_per_image=4, seed=1)
    spec = f"{data / 'annotations.json'}::{data / 'images'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _run((weights, spec, whole), env)
    _run((weights, spec, resumed), env, slow=True, kill_after_first_part=True)
    first = read_rows(resumed)
    assert 1 <= len(first) < 4, "the kill must land inside the first image"
    _run((weights, spec, resumed), env)
    a = {(r["image_id"], r["object_id"]): r for r in read_rows(whole)}
    b = {(r["image_id"], r["object_id"]): r for r in read_rows(resumed)}
    assert a.keys() == b.keys() and len(a) >= 8
    for k in a:
        assert a[k]["status"] == b[k]["status"] == "ok", (a[k]["reason"], b[k]["reason"])
        for col in ("iou", "boundary_iou", "pred_area_px", "tokens", "seed", "sampler_compat"):
            assert a[k][col] == b[k][col], (k, col, a[k][col], b[k][col])
    # the resumed image really ran in a different batch: objects of image 1 were split over two processes
    assert any(r["objects_in_image"] != a[(r["image_id"], r["object_id"])]["objects_in_image"] for r in b.values())
