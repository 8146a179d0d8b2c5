"""Fine-tune published FLIP weights for a domain, in one command (`make finetune`):

    python -m flip.training.finetune --model flip-tiny.authors --data "data/my-train#train" \\
        --eval data/my-eval skimage=/data/x.json::/data/imgs --out runs/finetune-my -- --steps 300 --batch-images 4

1. benchmarks the parent on every --eval set (`python -m benchmark` in a subprocess; nothing here imports the harness);
2. trains from the parent's weights (`--init-weights`) with the parent's own sampler rule and Gaussian convention
   (the authors' rule for the published weights); flags after `--` go to the trainer unchanged;
3. exports OUT/<arch>-finetuned.pt, whose meta records the parent's sha256 and the training data's fingerprint,
   and which loads through the registry: `python -m benchmark --model <arch> --weights OUT/<arch>-finetuned.pt`;
4. benchmarks that file on the same objects (same seed and selection), then writes OUT/before_after.md and .json:
   mean IoU per eval set (all objects and < 1 % of the image), the paired difference and the wall time of each phase.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("flip.finetune")


def parent_rule(model: str, weights: str | None):
    """(arch, registry name, convention, sampler rule) of the parent weights, without building a trainer."""
    from flip.segmenter import load_flip

    loaded, entry = load_flip(model, weights=weights)
    return entry.extra["arch"], entry.name, loaded.gaussian_convention, loaded.sampler_compat


def bench(model: str, weights: str | None, evals: list[str], results: Path, run: str, extra: list[str]) -> float:
    """One harness run into results/run; → wall seconds. Raises SystemExit naming the command when it fails."""
    cmd = [sys.executable, "-m", "benchmark", "--model", model, "--results", str(results), "--run", run,
           "--no-latest", "--no-progress", *[a for d in evals for a in ("--data", d)], *extra]
    if weights:
        cmd += ["--weights", weights]
    log.info("benchmark: %s", shlex.join(cmd))
    t = time.perf_counter()
    res = subprocess.run(cmd)
    if res.returncode != 0:
        raise SystemExit(f"benchmark failed (exit {res.returncode}): {shlex.join(cmd)}")
    return time.perf_counter() - t


def read_records(run_dir: Path, model: str | None = None) -> dict:
    """{dataset: {(image, object): (iou, area_ratio)}} of the run's ok records (of one model when given)."""
    out: dict = {}
    with open(Path(run_dir) / "records.csv", newline="") as f:
        for r in csv.DictReader(f):
            if model is not None and r["model"] != model:
                continue
            if r["status"] == "ok" and r["iou"] not in ("", "nan"):
                out.setdefault(r["dataset"], {})[(r["image_id"], r["object_id"])] = (float(r["iou"]), float(r["area_ratio"]))
    return out


def compare(before: dict, after: dict, seed: int = 0) -> list[dict]:
    """Per dataset: mean IoU before/after on the objects both runs scored, paired difference with a bootstrap 95 %
    interval, the share of objects that improved; the same for objects < 1 % of the image."""
    rows = []
    rng = np.random.default_rng(seed)
    for ds in sorted(set(before) & set(after)):
        keys = sorted(set(before[ds]) & set(after[ds]))
        for subset, sel in (("all", keys), ("<1%", [k for k in keys if before[ds][k][1] < 0.01])):
            if not sel:
                rows.append({"dataset": ds, "objects": subset, "n": 0})
                continue
            b = np.array([before[ds][k][0] for k in sel]) * 100
            a = np.array([after[ds][k][0] for k in sel]) * 100
            d = a - b
            boot = d[rng.integers(0, len(d), (2000, len(d)))].mean(1)
            rows.append({"dataset": ds, "objects": subset, "n": len(sel), "before": float(b.mean()),
                         "after": float(a.mean()), "diff": float(d.mean()), "ci_lo": float(np.percentile(boot, 2.5)),
                         "ci_hi": float(np.percentile(boot, 97.5)), "improved": float((d > 0).mean())})
    return rows


def table(rows: list[dict], times: dict, meta: dict) -> str:
    lines = [f"# Fine-tuning {meta['parent']} → `{meta['weights']}`", "",
             f"Training data: {', '.join(meta['data'])} (fingerprints {meta['data_fingerprint']}); parent sha256 "
             f"{', '.join(f['sha256'][:16] + '…' for f in meta['parent_files'])}; {meta['steps']} steps, "
             f"{meta['objects_seen']} objects; sampler rule {meta['sampler_compat']}, convention {meta['convention']}.",
             "", "| eval set | objects | n | before IoU | after IoU | after − before [95 % CI] | improved |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["n"]:
            lines.append(f"| {r['dataset']} | {r['objects']} | 0 | n/a | n/a | n/a | n/a |")
            continue
        lines.append(f"| {r['dataset']} | {r['objects']} | {r['n']} | {r['before']:.2f} | {r['after']:.2f} | "
                     f"{r['diff']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] | {100 * r['improved']:.0f} % |")
    lines += ["", "| phase | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in times.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, train_extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m flip.training.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="flip-tiny.authors", help="parent: a registry name with weights (name.tag)")
    p.add_argument("--weights", default=None, help="parent weights file instead of the name's tag")
    p.add_argument("--data", nargs="+", required=True, help="training data specs (segcore.datasets.open_dataset)")
    p.add_argument("--eval", nargs="+", required=True, help="held-out eval specs, benchmarked before and after")
    p.add_argument("--out", default="runs/finetune", help="output folder")
    p.add_argument("--bench-args", default="", help="extra benchmark flags, one string (e.g. '--threads 1 --limit 500')")
    p.add_argument("--no-bench-before", action="store_true", help="reuse OUT/bench/before when it exists")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    arch, parent, convention, rule = parent_rule(a.model, a.weights)
    weights_file = out / f"{arch}-finetuned.pt"
    extra = shlex.split(a.bench_args)
    times = {}
    if not (a.no_bench_before and (out / "bench" / "before" / "records.csv").is_file()):
        times["benchmark before"] = bench(a.model, a.weights, a.eval, out / "bench", "before", extra)

    from flip.training.cli import parse_args
    from flip.training.loop import ConfigError, train

    targs = parse_args(["--model", arch, "--init-weights", a.weights or parent, "--data", *a.data,
                        "--out", str(out / "train"), "--sampler-compat", rule, "--gaussian-convention", convention,
                        "--export", str(weights_file), *train_extra])
    t = time.perf_counter()
    try:
        res = train(targs)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    times["training"] = time.perf_counter() - t
    times["benchmark after"] = bench(arch, str(weights_file), a.eval, out / "bench", "after", extra)

    import torch

    meta = torch.load(weights_file, map_location="cpu", weights_only=True)["meta"]
    rows = compare(read_records(out / "bench" / "before"), read_records(out / "bench" / "after"))
    info = {"parent": parent if not a.weights else a.weights, "weights": str(weights_file),
            "parent_files": meta["parent"]["files"], "data": meta["data"],
            "data_fingerprint": {k: v["fingerprint"] for k, v in meta["data_fingerprint"].items()},
            "steps": meta["step"], "objects_seen": meta.get("objects_seen"), "sampler_compat": meta["sampler_compat"],
            "convention": meta["convention"]}
    from segcore.atomic import atomic_write_text

    atomic_write_text(out / "before_after.md", table(rows, times, info))
    atomic_write_text(out / "before_after.json", json.dumps({"rows": rows, "wall_s": times, **info,
                                                             "train_summary": res}, indent=2, default=str))
    print(table(rows, times, info))
    return 0


if __name__ == "__main__":
    from segcore.waitpolicy import apply_wait_policy

    apply_wait_policy()  # before torch and its OpenMP runtime load (this module's imports are torch-free)
    sys.exit(main())
