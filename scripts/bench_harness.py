"""Harness overhead per object (noop model) against FLIP-Tiny's own inference time per object.

    python scripts/bench_harness.py [--data data/objascale-mini] [--limit 200] [--threads 1]

Overhead = wall time of the harness loop per object with the noop model (image and mask decoding, prompts,
IoU + boundary IoU, record writing) minus the noop model's own time. The goal is overhead / FLIP-Tiny < 0.2.
A second figure takes the overhead inside the FLIP run (wall minus model time), where the metrics see real masks.
"""
from __future__ import annotations

from segcore.waitpolicy import apply_wait_policy

apply_wait_policy()  # first: before torch and its OpenMP runtime load (segcore/waitpolicy.py)

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmark.runner import RunConfig, Runner, torch_threads  # noqa: E402
from segcore.records import RecordWriter  # noqa: E402


def measure(model: str, data: str, limit: int, threads: int, boundary: bool, weights=None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(models=[model], datasets=[data], run_dir=tmp, limit=limit, seed=0, progress=False,
                        threads=threads, warmup=2, boundary=boundary, weights=weights)
        runner = Runner(cfg)
        with torch_threads(threads):
            return _measure(runner, tmp)


def _measure(runner, tmp) -> dict:
    work = runner.plan()
    runner.warm_up(work)
    rows = []
    with RecordWriter(tmp, tag="bench") as writer:
        t0 = time.perf_counter()
        for m, ds, entry, todo in work:
            for r in runner.run_image(m, ds, entry, todo):
                writer.add(r)
                rows.append(r)
        writer.flush()
        wall = time.perf_counter() - t0
    ok = [r for r in rows if r["status"] == "ok"]
    n = len(ok)
    model_time = sum(r["time_amortised"] for r in ok)  # the model's whole time, spread over its objects
    return {"objects": n, "failed": len(rows) - n, "wall_per_object": wall / max(n, 1),
            "model_per_object": float(np.mean([r["time_object"] for r in ok])) if ok else float("nan"),
            "model_amortised": model_time / max(n, 1), "harness_per_object": (wall - model_time) / max(n, 1),
            "data_per_object": float(np.mean([r["t_data"] for r in ok])) if ok else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/objascale-mini", help="dataset spec (default data/objascale-mini; render it with make objascale)")
    p.add_argument("--limit", type=int, default=200, help="objects to time (seeded sample)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--model", default="flip-tiny", help="the model to compare against (default flip-tiny)")
    p.add_argument("--no-boundary", dest="boundary", action="store_false", help="exclude boundary IoU from the harness")
    a = p.parse_args()
    data = a.data
    from segcore.datasets import DatasetError, open_dataset

    try:
        open_dataset(data)
    except DatasetError as e:
        print(f"{a.data}: {e}. Render ObjaScale mini first (make objascale) or pass --data.", file=sys.stderr)
        return 2
    noop = measure("noop", data, a.limit, a.threads, a.boundary)
    flip = measure(a.model, data, a.limit, a.threads, a.boundary)
    print(f"dataset {data}, {noop['objects']} objects, torch threads {a.threads}, boundary IoU {'on' if a.boundary else 'off'}")
    print(f"noop      : wall {noop['wall_per_object'] * 1e3:8.3f} ms/object, harness overhead {noop['harness_per_object'] * 1e3:8.3f} ms/object "
          f"(of which data loading {noop['data_per_object'] * 1e3:.3f} ms)")
    print(f"{a.model:10s}: wall {flip['wall_per_object'] * 1e3:8.3f} ms/object, model time {flip['model_per_object'] * 1e3:8.3f} ms/object "
          f"(amortised {flip['model_amortised'] * 1e3:.3f} ms), harness {flip['harness_per_object'] * 1e3:.3f} ms/object")
    ratio = noop["harness_per_object"] / flip["model_per_object"]
    print(f"overhead (noop run) / {a.model} inference = {ratio:.4f}  (goal < 0.2: {'met' if ratio < 0.2 else 'NOT met'})")
    # metrics on real (non-empty) predictions cost more than on the noop's empty ones: the in-run figure shows that
    inrun = flip["harness_per_object"] / flip["model_per_object"]
    print(f"overhead (inside the {a.model} run, real predictions) / {a.model} inference = {inrun:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
