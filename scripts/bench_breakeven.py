"""The break-even count: at how many objects per image does a SAM-style baseline (encode the image once, then
decode each box) cost as much as FLIP-Tiny (pays per object)?

One interleaved run over every model and thread count: for each round, each model is built once (random
weights for the baselines: timing only), then measured at each thread count (order alternating by round):
  baseline   set_image(image)              → encoder ms per image (its own input size: 1024² for SAM-style models)
             predict(K boxes) / K          → decoder ms per prompt (after one untimed predict)
  FLIP-Tiny  set_image(image)              → preprocessing ms per image
             predict(K boxes) / K          → ms per object (5σ and hierarchical; after one untimed predict)
Medians over rounds. Per image: baseline(n) = encoder + n·decoder, FLIP(n) = preprocessing + n·per object;
break-even n* = (encoder − FLIP preprocessing) / (FLIP per object − decoder), "never" when the decoder alone costs
at least FLIP's per-object time. Rows are written after every measurement (atomic) and a rerun resumes.
Thread policy as every entry point (segcore/waitpolicy.py): OMP_WAIT_POLICY=PASSIVE unless set. Load averages are
recorded with every row: the machine is shared.

    FLIP_SUITE_CACHE=<folder with flip/flip-tiny-fused.onnx> python scripts/bench_breakeven.py --rounds 2 \
        --out results/breakeven
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

from segcore.waitpolicy import apply_wait_policy  # noqa: I001

apply_wait_policy()  # before torch loads
import numpy as np  # noqa: E402

from bench_baselines import small_objects, synthetic_scene  # noqa: E402  (scripts/ is on sys.path when run as a script)

FLIPS = ("flip-tiny", "flip-tiny-h")  # untagged: the authors' weights when on this machine, else the first tag
SMALL = "@small"  # FLIP on the small-object scene (discs of 0.05-1 % of the image): FLIP's cost grows with size
ALL_FLIPS = FLIPS + tuple(f + SMALL for f in FLIPS)
# untimed encoder pass only for the small encoders; the others take minutes per pass on 2 shared cores, where
# first-call costs are a small part
WARM = {"mobilesam", "efficientsam-t", "fastsam-s", "light-hqsam", "slimsam-77", "sam21-t", "sam21-s"}
FIELDS = ("round", "model", "threads", "kind", "encoder_ms", "decoder_ms", "objects", "params", "weights_id",
          "load1_start", "load1_end", "time")


def write_csv(rows: list[dict], path: Path, fields=None) -> None:
    from segcore.atomic import atomic_write_text
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields or dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def build(name: str, seed: int):
    from segcore import registry

    import baselines  # noqa: F401  (registers the baselines)
    import flip  # noqa: F401

    if name.removesuffix(SMALL) in FLIPS:
        return registry.create(name.removesuffix(SMALL), device="cpu", seed=seed), "flip"
    return registry.create(name, weights="random", device="cpu", seed=seed), "baseline"


def measure(seg, kind: str, name: str, image, prompts) -> tuple[float, float]:
    if kind == "flip" or name in WARM:
        seg.set_image(image)  # untimed: first-call allocations
    t0 = time.perf_counter()
    seg.set_image(image)
    t1 = time.perf_counter()
    seg.predict(prompts[:1])  # untimed decoder warm-up
    t2 = time.perf_counter()
    seg.predict(prompts)
    t3 = time.perf_counter()
    return 1e3 * (t1 - t0), 1e3 * (t3 - t2) / len(prompts)


def summarise(raw: list[dict], flips=ALL_FLIPS) -> list[dict]:
    """Median encoder / decoder ms per (model, threads) over rounds, and each baseline's break-even count."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in raw:
        if r.get("encoder_ms") not in (None, ""):
            groups.setdefault((r["model"], int(r["threads"])), []).append(r)
    out = {}
    for (m, t), rs in groups.items():
        out[(m, t)] = {"model": m, "threads": t, "kind": rs[0]["kind"], "rounds": len(rs),
                       "encoder_ms": statistics.median(float(r["encoder_ms"]) for r in rs),
                       "decoder_ms": statistics.median(float(r["decoder_ms"]) for r in rs),
                       "params_M": float(rs[0]["params"]) / 1e6, "weights_id": rs[0]["weights_id"],
                       "load1": statistics.median(float(r["load1_start"]) for r in rs)}
    from benchmark.plots import break_even

    for (m, t), s in out.items():
        for f in flips:
            ref = out.get((f, t))
            key = f"break_even_vs_{f}"
            if s["kind"] == "baseline" and ref is not None:
                s[key] = break_even(s["encoder_ms"] - ref["encoder_ms"], s["decoder_ms"], ref["decoder_ms"])
    return sorted(out.values(), key=lambda s: (s["threads"], s["kind"] != "flip", s["encoder_ms"]))


def fmt_n(v) -> str:
    if v is None or v == "":
        return "n/a"
    return "never (FLIP cheaper at every count)" if v == float("inf") else f"{v:.1f}"


def table(summary: list[dict], flips=ALL_FLIPS) -> str:
    lines = []
    for t in sorted({s["threads"] for s in summary}):
        rows = [s for s in summary if s["threads"] == t]
        fl = {s["model"]: s for s in rows if s["kind"] == "flip"}
        lines.append(f"\n### {t} thread(s)\n")
        lines.append("FLIP-Tiny per object: " + ", ".join(
            f"{m} {s['decoder_ms']:.1f} ms (+ {s['encoder_ms']:.1f} ms per image)" for m, s in fl.items()) + "\n")
        lines.append("| model | params (M) | encoder ms / image | decoder ms / prompt | "
                     + " | ".join(f"break-even objects vs {f}" for f in flips) + " | rounds | load (1 min) |")
        lines.append("|---|---|---|---|" + "---|" * len(flips) + "---|---|")
        for s in rows:
            if s["kind"] != "baseline":
                continue
            lines.append(f"| {s['model']} | {s['params_M']:.1f} | {s['encoder_ms']:.0f} | {s['decoder_ms']:.1f} | "
                         + " | ".join(fmt_n(s.get(f"break_even_vs_{f}")) for f in flips)
                         + f" | {s['rounds']} | {s['load1']:.1f} |")
    return "\n".join(lines) + "\n"


def plots(summary: list[dict], out: Path) -> list[Path]:
    from benchmark.plots import breakeven_plot

    paths = []
    for t in sorted({s["threads"] for s in summary}):
        rows = [{"label": s["model"], "encoder_ms": s["encoder_ms"], "decoder_ms": s["decoder_ms"]}
                for s in summary if s["threads"] == t and s["kind"] == "baseline"]
        order = ("flip-tiny-h", "flip-tiny", "flip-tiny-h" + SMALL, "flip-tiny" + SMALL)  # the markers use the first
        fl = {f"{s['model']} (per object)": s for s in sorted(summary, key=lambda s: order.index(s["model"])
                                                            if s["model"] in order else 9)
              if s["threads"] == t and s["kind"] == "flip"}
        if not rows:
            continue
        # FLIP's per-image preprocessing is added to its lines through its per-object slope at n = 1 only:
        # it is < 1 % of one object, so the plot draws n·per-object
        paths += breakeven_plot(rows, {k: s["decoder_ms"] for k, s in fl.items()}, out / f"breakeven-{t}t",
                                title=f"CPU, {t} thread(s), random-init baselines; FLIP-Tiny with "
                                      f"{next(iter(fl.values()))['weights_id'].split('@')[0] if fl else 'n/a'}")
    return paths


def main(argv=None) -> int:
    import baselines
    from segcore import registry

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # cheapest first: on a loaded machine the run may be cut short, and the largest models matter least here
    order = sorted(baselines.names(), key=lambda n: registry.get(n).paper_parameters or 28e6)
    ap.add_argument("--models", default=",".join(ALL_FLIPS + tuple(order)),
                    help=f"comma-separated registry names; a FLIP name + '{SMALL}' runs on the small-object scene")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median reported)")
    ap.add_argument("--objects", type=int, default=8, help="boxes per image for the decoder / FLIP per-object time")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene and of the random weights")
    ap.add_argument("--out", default="results/breakeven", help="folder: raw.csv, summary.csv, summary.md, plots")
    ap.add_argument("--summarise-only", action="store_true", help="redo the summary and plots from raw.csv")
    args = ap.parse_args(argv)

    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / "raw.csv"
    raw = list(csv.DictReader(open(raw_path))) if raw_path.exists() else []
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    image, prompts = synthetic_scene(args.width, args.height, args.objects, args.seed)
    small_image, small_prompts = small_objects(args.width, args.height, args.objects, args.seed + 1)
    meta = {**vars(args), "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "FLIP_SUITE_CACHE": os.environ.get("FLIP_SUITE_CACHE"),
            "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    done = {(int(r["round"]), r["model"], int(r["threads"])) for r in raw}
    if not args.summarise_only:
        print(json.dumps(meta), flush=True)
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]  # interleaved: drift in load hits every model alike
            for name in order:
                todo = [t for t in (threads if rnd % 2 == 0 else threads[::-1]) if (rnd, name, t) not in done]
                if not todo:
                    continue
                try:
                    seg, kind = build(name, args.seed)
                except Exception as e:  # one model failing must not lose the others
                    print(f"{name}: cannot build: {type(e).__name__}: {e}", flush=True)
                    continue
                for t in todo:
                    torch.set_num_threads(t)
                    l0 = os.getloadavg()[0]
                    try:
                        enc, dec = measure(seg, kind, name, *((small_image, small_prompts) if name.endswith(SMALL)
                                                              else (image, prompts)))
                    except Exception:
                        traceback.print_exc()
                        continue
                    row = {"round": rnd, "model": name, "threads": t, "kind": kind, "encoder_ms": enc, "decoder_ms": dec,
                           "objects": len(prompts), "params": seg.num_parameters, "weights_id": seg.weights_id,
                           "load1_start": l0, "load1_end": os.getloadavg()[0], "time": time.strftime("%H:%M:%S")}
                    raw.append(row)
                    write_csv(raw, raw_path, FIELDS)
                    print(f"round {rnd} {name} {t}t: encoder {enc:.0f} ms, per prompt/object {dec:.1f} ms, "
                          f"load {l0:.1f}", flush=True)
                del seg
                gc.collect()
    summary = summarise(raw)
    write_csv(summary, out / "summary.csv")
    from segcore.atomic import atomic_write_text

    md = table(summary)
    atomic_write_text(out / "summary.md", md)
    if not args.summarise_only:  # the run's own record; a re-summary leaves it alone
        meta["loadavg_end"] = os.getloadavg()
        atomic_write_text(out / "meta.json", json.dumps(meta, indent=1))
    for p in plots(summary, out):
        print("plot:", p)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
