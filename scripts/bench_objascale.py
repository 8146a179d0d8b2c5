"""Throughput of the ObjaScale generator on this machine: images/hour and where the time goes.

    python scripts/bench_objascale.py --preset mini --num-images 28            # renders into a temp folder
    python scripts/bench_objascale.py --preset paper --num-images 3 --workers 1
    python scripts/bench_objascale.py --preset paper --area-ratios 1e-5 1e-3 0.02 0.1 0.25   # one image per ratio
    python scripts/bench_objascale.py --from data/objascale-mini                # figures of an existing dataset

images/hour = 3600 × done images / wall seconds of the render (Blender start-up included). CPU seconds per image
= user + system time of all objascale processes (Blender workers included) / done images: on a shared machine
wall time depends on the other jobs, CPU time much less. The per-phase means come from the records' timings.
Extra arguments after `--` go to `python -m objascale`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def summarise(out: Path, wall: float | None) -> dict:
    recs = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json")) if ".skip" not in p.name]
    skips = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.skip.json"))]
    res = {"done": len(recs), "skipped": len(skips), "skip_reasons": [s.get("reason", "") for s in skips]}
    if not recs:
        return res
    ratios = np.array([r["area_ratio"] for r in recs])
    px = np.array([r["width"] * r["height"] for r in recs])
    res.update(
        area_ratio_min=float(ratios.min()), area_ratio_median=float(np.median(ratios)), area_ratio_max=float(ratios.max()),
        megapixels_mean=float(px.mean() / 1e6), megapixels_max=float(px.max() / 1e6),
        attempts_mean=float(np.mean([len(r["attempts"]) for r in recs])),
        region_mode_fraction=float(np.mean([r["render"].get("mode") in ("region", "composite") for r in recs])),
        device=recs[0]["render"].get("device"), denoiser=recs[0]["render"].get("denoiser"),
    )
    res["samples_mean"] = float(np.mean([r["render"].get("samples", 0) for r in recs]))
    res["per_image"] = [f"{r['width']}x{r['height']} area {r['area_ratio']:.2g} samples {r['render'].get('samples')} "
                        f"{r['render'].get('mode')} attempt {r['timings'].get('attempt_s', 0):.1f}s "
                        f"cpu {r['timings'].get('cpu_s', float('nan')):.1f}s mask {r['timings'].get('mask_s', 0):.2f}s "
                        f"beauty {r['timings'].get('beauty_s', 0):.1f}s" for r in recs]
    for k in ("import_s", "probe_s", "mask_s", "beauty_s", "write_s", "attempt_s", "cpu_s"):
        v = [r["timings"].get(k, 0.0) for r in recs]
        res[f"mean_{k}"] = float(np.mean(v))
    res["sum_cpu_s_records"] = float(sum(r["timings"].get("cpu_s", 0.0) for r in recs))
    res["sum_attempt_s"] = float(sum(a["seconds"] for r in recs for a in r["attempts"]))
    if wall:
        res["wall_s"] = wall
        res["images_per_hour"] = 3600.0 * len(recs) / wall
    else:  # an existing dataset: per-image seconds from the records (no process start-up)
        res["images_per_hour_from_records"] = 3600.0 * len(recs) / res["sum_attempt_s"]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=["mini", "paper"], help="objascale preset to render")
    ap.add_argument("--num-images", type=int, default=None, help="images to render (default: the preset's)")
    ap.add_argument("--workers", type=int, default=1, help="parallel Blender workers")
    ap.add_argument("--out", default=None, help="render here (default: a temp folder, removed after)")
    ap.add_argument("--from", dest="existing", default=None, help="only summarise an existing dataset folder")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--area-ratios", type=float, nargs="*", default=None,
                    help="one image per listed mask-area ratio (each a 1-image run with its own seed), to span the range")
    ap.add_argument("--seed", type=int, default=None, help="objascale --seed (default: the preset's)")
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="-- extra objascale flags")
    a = ap.parse_args()
    if a.existing:
        res = summarise(Path(a.existing), None)
    else:
        tmp = None if a.out else tempfile.TemporaryDirectory(prefix="bench-objascale-")
        base = [sys.executable, "-m", "objascale", "--preset", a.preset, "--workers", str(a.workers), "--no-write-hdf5"]
        extra = [x for x in a.rest if x != "--"]
        runs = []  # (out folder, command)
        if a.area_ratios:
            for k, r in enumerate(a.area_ratios):
                out = Path(a.out or tmp.name) / f"bench-{a.preset}-area{k}"
                seed = (a.seed if a.seed is not None else 1000) + k
                runs.append((out, base + ["--out", str(out), "--num-images", "1", "--seed", str(seed),
                                          "--area-ratio-min", repr(r), "--area-ratio-max", repr(r)] + extra))
        else:
            out = Path(a.out or tmp.name) / f"bench-{a.preset}"
            cmd = base + ["--out", str(out)] + (["--num-images", str(a.num_images)] if a.num_images is not None else [])
            runs.append((out, cmd + (["--seed", str(a.seed)] if a.seed is not None else []) + extra))
        wall = 0.0
        cpu0 = os.times()
        for out, cmd in runs:
            print("running:", " ".join(cmd), flush=True)
            t = time.time()
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            wall += time.time() - t
            if rc != 0:
                print(f"objascale exited with {rc}")
                return rc
        cpu1 = os.times()
        cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
        if len(runs) > 1:  # gather every run's records into one folder for the summary
            merged = Path(a.out or tmp.name) / f"bench-{a.preset}-all" / "records"
            merged.mkdir(parents=True, exist_ok=True)
            for k, (out, _) in enumerate(runs):
                for p in (out / "records").glob("*.json"):
                    (merged / f"{k:03d}{p.name[3:]}").write_bytes(p.read_bytes())
            res = summarise(merged.parent, wall)
        else:
            res = summarise(runs[0][0], wall)
        res.update(preset=a.preset, workers=a.workers, command=" ; ".join(" ".join(c) for _, c in runs),
                   cpu_s_total=cpu, cpu_s_per_image=cpu / max(res["done"], 1),
                   load_average_1min=os.getloadavg()[0])
        if tmp:
            tmp.cleanup()
    for k, v in res.items():
        if isinstance(v, list) and k == "per_image":
            for line in v:
                print(f"{'image':28s} {line}")
            continue
        print(f"{k:28s} {v:.4g}" if isinstance(v, float) else f"{k:28s} {v}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
