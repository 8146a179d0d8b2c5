"""Do threads ever hurt? `python -m benchmark` with its defaults at --threads 1 and 2, alternated, optionally with one
extra CPU-bound process running.

    python scripts/bench_threads.py --data data/objascale-mini --rounds 3 [--busy] [--mode 5sigma] [--out results/x.json]

Each round runs the benchmark CLI (a fresh process: the OpenMP runtime starts with whatever the CLI sets up) once per
thread count, order alternating between rounds, into a temporary results folder. Per object it takes the median of
`time_object` over the rounds; it prints the median per thread count and the median of the per-object ratios
t(2)/t(1) (< 1: two threads faster). Load averages are recorded. Prints figures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_once(data: str, threads: int, mode: str, out: Path, run: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "benchmark", "--data", data, "--threads", str(threads), "--mode", mode,
           "--results", str(out), "--run", run, "--no-report", "--no-progress", "--no-boundary", "--no-latest", *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    times = {}
    for f in glob.glob(str(out / run / "records" / "*.csv")):
        with open(f) as fh:
            for r in csv.DictReader(fh):
                if r["status"] == "ok":
                    times[(r["image_id"], r["object_id"])] = (float(r["time_object"]), float(r["area_ratio"]))
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/objascale-mini")
    ap.add_argument("--threads", type=int, nargs=2, default=[1, 2])
    ap.add_argument("--mode", default="5sigma", choices=["5sigma", "hierarchical"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", action="store_true", help="run one extra CPU-bound process (python -c 'while 1: pass')")
    ap.add_argument("--out", type=Path, default=None, help="append the summary as one JSON line to this file")
    ap.add_argument("extra", nargs="*", help="more `python -m benchmark` arguments (after --)")
    args = ap.parse_args(argv)
    busy = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if args.busy else None
    try:
        time.sleep(1.0 if busy else 0.0)
        la0 = os.getloadavg()
        per = {t: [] for t in args.threads}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                order = args.threads if r % 2 == 0 else args.threads[::-1]
                for t in order:
                    per[t].append(run_once(args.data, t, args.mode, Path(tmp), f"t{t}r{r}", args.extra))
        la1 = os.getloadavg()
    finally:
        if busy:
            busy.kill()
            busy.wait()
    t1, t2 = args.threads
    keys = set.intersection(*(set(d) for t in args.threads for d in per[t]))
    med = {t: {k: float(np.median([d[k][0] for d in per[t]])) for k in keys} for t in args.threads}
    ratios = [med[t2][k] / med[t1][k] for k in keys]
    small = [k for k in keys if per[t1][0][k][1] < 0.01]
    res = dict(data=args.data, mode=args.mode, busy_process=args.busy, rounds=args.rounds, objects=len(keys),
               omp_wait_policy_env=os.environ.get("OMP_WAIT_POLICY"), loadavg_start=la0, loadavg_end=la1,
               **{f"median_ms_{t}thr": 1e3 * float(np.median(list(med[t].values()))) for t in args.threads},
               ratio_median=float(np.median(ratios)), ratio_q25=float(np.percentile(ratios, 25)),
               ratio_q75=float(np.percentile(ratios, 75)),
               ratio_median_small=float(np.median([med[t2][k] / med[t1][k] for k in small])) if small else None,
               date=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(json.dumps(res))
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
