"""Compare a project-trained FLIP with the authors' weights on the same objects, through the benchmark runner:

    python -m flip.training.evaluate --weights flip/weights/flip-tiny-objascale.pt --data data/objascale-mini

Both models run with the harness defaults (5σ box, N=512, τ=2.67, c=1.44, same seed). Prints mean IoU (in points)
per area bucket of |mask|/(H·W) and the ratio project/authors; writes the table as CSV next to the runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

BUCKETS = [("<0.01%", 0.0, 1e-4), ("0.01-0.1%", 1e-4, 1e-3), ("0.1-1%", 1e-3, 1e-2), ("1-10%", 1e-2, 1e-1),
           (">10%", 1e-1, np.inf)]


def run_model(model: str, weights: str, data: str, run_dir: Path, mode: str, threads: int, seed: int):
    from segcore.records import STATUS_OK, read_frame
    from benchmark.runner import RunConfig, run

    run(RunConfig(models=[model], datasets=[data], run_dir=str(run_dir), weights=weights, mode=mode, seed=seed,
                  threads=threads, boundary=False, progress=True))
    df = read_frame(run_dir)
    return df[df["status"] == STATUS_OK]


def bucket_table(a, b, label_a: str, label_b: str) -> list[dict]:
    """Per bucket (and overall, and < 1 %): mean IoU ×100 of both on their common objects, and a/b."""
    key = ["dataset", "image_id", "object_id"]
    m = a[key + ["iou", "area_ratio"]].merge(b[key + ["iou"]], on=key, suffixes=(f"_{label_a}", f"_{label_b}"))
    rows = []
    sel = [(name, (m["area_ratio"] >= lo) & (m["area_ratio"] < hi)) for name, lo, hi in BUCKETS]
    sel += [("<1%", m["area_ratio"] < 1e-2), ("all", m["area_ratio"] >= 0)]
    for name, s in sel:
        part = m[s]
        ia = 100 * part[f"iou_{label_a}"].mean() if len(part) else float("nan")
        ib = 100 * part[f"iou_{label_b}"].mean() if len(part) else float("nan")
        rows.append({"bucket": name, "objects": int(len(part)), f"iou_{label_a}": ia, f"iou_{label_b}": ib,
                     "difference": ia - ib, "ratio": ia / ib if ib and np.isfinite(ib) and ib > 0 else float("nan")})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m flip.training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="project weights file (python -m flip.training.export)")
    p.add_argument("--reference", default="authors", help="weights of the comparison model (default: the authors')")
    p.add_argument("--model", default="flip-tiny", help="registry name")
    p.add_argument("--data", default="data/objascale-mini", help="held-out dataset spec")
    p.add_argument("--out", default="runs/eval", help="folder for the two benchmark runs and the table")
    p.add_argument("--mode", default="5sigma", choices=["5sigma", "hierarchical"], help="FLIP inference mode")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="harness seed (same for both models)")
    a = p.parse_args(argv)
    out = Path(a.out)
    if not Path(a.weights).is_file():
        p.error(f"--weights {a.weights}: file not found")
    proj = run_model(a.model, a.weights, a.data, out / "project", a.mode, a.threads, a.seed)
    ref = run_model(a.model, a.reference, a.data, out / "reference", a.mode, a.threads, a.seed)
    rows = bucket_table(proj, ref, "project", "reference")
    import pandas as pd

    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".comparison.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.2f")
    tmp.replace(out / "comparison.csv")
    print(f"# project: {proj['weights_id'].iloc[0] if len(proj) else 'n/a'}; reference: "
          f"{ref['weights_id'].iloc[0] if len(ref) else 'n/a'}; data {a.data}; mode {a.mode}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
