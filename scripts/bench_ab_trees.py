"""Per-object FLIP predict time of two checkouts of this repository, interleaved A/B at the same machine load.

    python scripts/bench_ab_trees.py --a /work/main --b . --data /work/data/objascale-mini --threads 1 2

Each checkout runs in its own worker process (PYTHONPATH and cwd = that checkout, its own compiled extension), with
the authors' FLIP-Tiny (flip-tiny-fused.onnx through FLIP_REFERENCE_DIR, tests/reference.py) and the default backend. The parent sends both
workers the same object in turn (AB, then BA for the next repeat and object) and keeps each side's fastest of
--repeats per object; it prints, per mode and thread count, the median times and the median of the per-object ratios
B/A (< 1: B is faster) and whether the masks are identical. For a refactor that must not cost speed: a figure
measured under the same load for both sides, which a table against an older run cannot give on a shared machine.
Prints figures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def worker(args) -> None:
    try:  # before torch loads; a checkout older than segcore/waitpolicy.py applies it in `import flip`
        from segcore.waitpolicy import apply_wait_policy
    except ImportError:
        import flip  # noqa: F401
    else:
        apply_wait_policy()
    import inspect
    import hashlib

    import flip
    from flip.predictor import FlipPredictor
    from segcore.datasets import open_dataset
    from segcore.prompt import Prompt

    from _reference import reference  # (tests/reference.py: the one FLIP_REFERENCE_DIR setting)

    ref = reference.require(reference.onnx_path(), "the authors' FLIP-Tiny ONNX")
    model = flip.pretrained("flip-tiny", path=ref)
    ds = open_dataset(args.data)
    items = []
    for e in ds.index():
        ids = [o.object_id for o in e.objects]
        masks = ds.load_masks(e, ids)
        img = np.ascontiguousarray(ds.load_image(e))
        for i in ids:
            m = masks.get(i)
            if isinstance(m, np.ndarray) and m.sum() >= 4:
                items.append((img, Prompt.from_mask(m, image_id=str(e.image_id), object_id=str(i))))
    if args.limit:
        keep = sorted(np.random.default_rng(0).choice(len(items), min(args.limit, len(items)), replace=False).tolist())
        items = [items[k] for k in keep]
    preds = {}
    kw = {"backend": "auto"} if "backend" in inspect.signature(FlipPredictor).parameters else {}
    print(json.dumps({"objects": len(items)}), flush=True)
    for line in sys.stdin:
        mode, threads, k = line.split()
        key = (mode, int(threads))
        if key not in preds:
            preds[key] = FlipPredictor(model, mode=mode, device="cpu", seed=0, threads=int(threads), **kw)
        pred = preds[key]
        img, prompt = items[int(k)]
        pred.set_image(img)
        t0 = time.perf_counter()
        out = pred.predict([prompt])
        dt = time.perf_counter() - t0
        m = out[0] if isinstance(out, list) else out
        print(json.dumps({"s": dt, "mask": hashlib.sha256(np.packbits(m).tobytes()).hexdigest()[:16]}), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="checkout A (e.g. the main branch's)")
    ap.add_argument("--b", type=Path, required=True, help="checkout B")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=None, help="seeded sample of this many objects")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", default=["5sigma", "hierarchical"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    procs = {}
    for side, tree in (("a", args.a), ("b", args.b)):
        tree = tree.resolve()
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--a", ".", "--b", ".", "--data", args.data]
        cmd += ["--limit", str(args.limit)] if args.limit else []
        procs[side] = subprocess.Popen(cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    n = {s: json.loads(p.stdout.readline())["objects"] for s, p in procs.items()}
    assert n["a"] == n["b"], n

    def call(side, mode, threads, k):
        p = procs[side]
        p.stdin.write(f"{mode} {threads} {k}\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    results = []
    turn = 0
    for mode in args.modes:
        for threads in args.threads:
            la0 = os.getloadavg()[0]
            for side in "ab":  # warm-up: sessions, weight caches
                call(side, mode, threads, 0)
            ta, tb, same = [], [], 0
            for k in range(n["a"]):
                best = {"a": float("inf"), "b": float("inf")}
                masks = {}
                for r in range(args.repeats):
                    for side in ("ab" if turn % 2 == 0 else "ba"):
                        got = call(side, mode, threads, k)
                        best[side] = min(best[side], got["s"])
                        masks[side] = got["mask"]
                    turn += 1
                ta.append(best["a"])
                tb.append(best["b"])
                same += masks["a"] == masks["b"]
            ratio = np.array(tb) / np.array(ta)
            row = dict(mode=mode, threads=threads, objects=n["a"], a_ms=1e3 * float(np.median(ta)),
                       b_ms=1e3 * float(np.median(tb)), ratio_median=float(np.median(ratio)),
                       ratio_q25=float(np.percentile(ratio, 25)), ratio_q75=float(np.percentile(ratio, 75)),
                       identical_masks=same, load_start=la0, load_end=os.getloadavg()[0])
            results.append(row)
            print(f"{mode:12s} {threads} thr  A {row['a_ms']:8.2f} ms  B {row['b_ms']:8.2f} ms  B/A {row['ratio_median']:.3f} "
                  f"[{row['ratio_q25']:.3f}–{row['ratio_q75']:.3f}]  identical masks {same}/{n['a']}  "
                  f"load {la0:.1f}→{row['load_end']:.1f}", flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    if args.out:
        from segcore.atomic import atomic_write_json

        atomic_write_json(args.out, {"a": str(args.a), "b": str(args.b), "data": args.data, "repeats": args.repeats,
                                     "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
