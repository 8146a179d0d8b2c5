"""The prompt-noise sweep: python -m benchmark.robustness --model M[,M2...] --data D [--levels 0,0.05,0.1,0.2]

One ordinary benchmark run per protocol and level, each in its own run folder under RESULTS/NAME/ (so runs with
different prompts are never averaged together; each resumes like any run):
  oracle                 level 0 of both protocols (a jitter of level 0 is the identity map: the same prompts)
  box-jitter:L,cap       L in --levels above 0
  gaussian-jitter:L,cap  the same noise on the Gaussian (docs/prompts.md)
then RESULTS/NAME/robustness.{md,csv,json} and robustness.{png,svg}:
  * mean IoU per model and level, one table per protocol, all objects and objects < 1 % of the image;
  * the paired difference of every jittered run against the oracle run on the same objects, bootstrap 95 % CI;
  * the plot: IoU against noise level, one line per model (solid: box-jitter, dashed: gaussian-jitter), all
    objects and < 1 % objects side by side, error bars = 95 % CIs of the means.
Options after `--` go to every benchmark run (e.g. `-- --limit 200 --seed 1`). --summary-only rebuilds the
summary from the runs already there.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from segcore.atomic import atomic_write_json, atomic_write_text
from segcore.prompt_protocols import BOX_JITTER, DEFAULT_CAP, GAUSSIAN_JITTER, ORACLE, ProtocolSpec
from segcore.records import read_frame, record_files

from . import stats, tables
from .models import iou_is_meaningful

LEVELS = (0.0, 0.05, 0.1, 0.2)
JITTERS = (BOX_JITTER, GAUSSIAN_JITTER)
SUBSETS = (("all", "all objects", lambda d: np.ones(len(d), dtype=bool)),
           ("small", f"< {tables.SMALL_OBJECT_RATIO:.0%} of the image", lambda d: (d["area_ratio"] < tables.SMALL_OBJECT_RATIO).to_numpy()))


def sweep_specs(levels, cap: float = DEFAULT_CAP, kinds=JITTERS) -> list[ProtocolSpec]:
    """The protocols a sweep runs: oracle once (level 0 of every kind), then each kind at each level > 0."""
    specs = [ProtocolSpec()]
    for kind in kinds:
        specs += [ProtocolSpec(kind, float(lv), float(cap)) for lv in levels if float(lv) > 0]
    return specs


def run_sweep(models: str, data: list[str], out: Path, levels, cap: float, extra: list[str]) -> list[tuple[ProtocolSpec, int]]:
    from .cli import main as bench

    codes = []
    for spec in sweep_specs(levels, cap):
        argv = ["--model", models, "--results", str(out), "--run", spec.slug(), "--prompt", str(spec), "--no-latest"]
        for d in data:
            argv += ["--data", d]
        print(f"== {spec}", flush=True)
        codes.append((spec, bench(argv + list(extra))))
    return codes


def _runs(out: Path) -> list[tuple[ProtocolSpec, Path]]:
    """(protocol, run folder) of every run of the sweep that holds records, read from each run's records."""
    found = []
    for d in sorted(p for p in out.iterdir() if p.is_dir()):
        if not record_files(d):
            continue
        meta = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
        proto = (meta.get("prompts") or {}).get("protocol", ORACLE)
        from segcore.prompt_protocols import parse_protocol

        found.append((parse_protocol(proto), d))
    return found


def _level(spec: ProtocolSpec) -> float:
    return 0.0 if spec.kind == ORACLE else spec.level


def summarise(out: Path, seed: int = 0) -> dict:
    """Tables, paired differences and the plot from the sweep's run folders."""
    import pandas as pd

    runs = _runs(out)
    if not runs:
        raise FileNotFoundError(f"{out}: no run folder with records")
    frames = []
    for spec, d in runs:
        df = read_frame(d)
        df["_kind"], df["_level"], df["_run"] = spec.kind, _level(spec), d.name
        frames.append(df)
    all_df = pd.concat(frames, ignore_index=True)
    order = {}  # the models in the order the sweep named them (run.json), not the records' alphabetical one
    for _, d in runs:
        meta = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
        for m in (meta.get("settings") or {}).get("models") or []:
            order.setdefault(m, len(order))
    all_df = all_df.assign(_o=all_df["model"].map(lambda m: order.get(m, len(order)))).sort_values("_o", kind="stable")
    pairs = [p for p in tables.model_order(all_df) if iou_is_meaningful(p[1])]
    labels = tables.short_labels(tables.model_order(all_df))
    ok = tables.valid_iou(all_df)
    caps = sorted({s.cap for s, _ in runs if s.jitter})
    oracle = ok[ok["_kind"] == ORACLE]
    keys = ["dataset", "image_id", "object_id"]
    levels = sorted({_level(s) for s, _ in runs})
    result = {"levels": levels, "caps": caps, "datasets": sorted(set(all_df["dataset"])), "models": [labels[p] for p in pairs],
              "runs": {d.name: str(s) for s, d in runs}, "curves": [], "paired": []}
    for m, w in pairs:
        mo = ok[(ok["model"] == m) & (ok["weights_id"] == w)]
        base = mo[mo["_kind"] == ORACLE]
        for kind in JITTERS:
            for sname, _, keep in SUBSETS:
                pts = []
                for lv in levels:
                    sub = base if lv == 0 else mo[(mo["_kind"] == kind) & (mo["_level"] == lv)]
                    sub = sub[keep(sub)] if len(sub) else sub
                    v = sub["iou"].to_numpy(float)
                    if not len(v):
                        continue
                    lo, hi = stats.bootstrap_mean_ci(v, stats._rng(seed, "robustness", m, w, kind, lv, sname))
                    pts.append({"level": lv, "mean": float(v.mean()), "ci": [lo, hi], "n": int(len(v))})
                    if lv > 0 and len(base):
                        j = sub[keys + ["iou"]].merge(base[keys + ["iou"]], on=keys, suffixes=("", "_oracle"))
                        if len(j):
                            diff = (j["iou"] - j["iou_oracle"]).to_numpy(float)
                            dlo, dhi = stats.bootstrap_mean_ci(diff, stats._rng(seed, "robustness-paired", m, w, kind, lv, sname))
                            result["paired"].append({"model": labels[(m, w)], "protocol": kind, "level": lv, "subset": sname,
                                                     "n": int(len(diff)), "mean": float(diff.mean()), "ci": [dlo, dhi],
                                                     "worse": float(np.mean(diff < 0))})
                result["curves"].append({"model": labels[(m, w)], "protocol": kind, "subset": sname, "points": pts})
    result["oracle_objects"] = int(len(oracle.drop_duplicates(keys)))
    write_summary(out, result)
    return result


def _fmt_cell(p) -> str:
    return tables.EMPTY if p is None else f"{100 * p['mean']:.2f}"


_NOTES = {BOX_JITTER: "box-jitter L: each box coordinate + N(0, L·side), capped at ±{cap:g} px, sub-pixel, clipped to the "
                       "image; the Gaussian moved by the same axis-aligned map.",
          GAUSSIAN_JITTER: "gaussian-jitter L: box-jitter L on the Gaussian's equivalent box (sides √(12λ+1) along its "
                           "principal axes) plus a rotation N(0, 2L) rad, cap ±{cap:g} px; the box moved by the same map."}


def protocol_table(result: dict, kind: str) -> tables.Table:
    levels = result["levels"]
    rows = []
    for c in result["curves"]:
        if c["protocol"] != kind:
            continue
        by = {p["level"]: p for p in c["points"]}
        n = max((p["n"] for p in c["points"]), default=0)
        rows.append([c["model"], dict((s, t) for s, t, _ in SUBSETS)[c["subset"]], str(n)]
                    + [_fmt_cell(by.get(lv)) for lv in levels])
    spec = ProtocolSpec(kind, 0.1, result["caps"][0] if result["caps"] else DEFAULT_CAP)
    head = ["Model", "Objects", "n"] + [f"{lv:g} (oracle)" if lv == 0 else f"{lv:g}" for lv in levels]
    t = tables.Table(f"robustness_{kind}", f"Mean IoU (%) against {kind} level (prompts: {kind}, cap "
                     f"{spec.cap:g} px; level 0 = the oracle run)", head, rows)
    t.notes.append(_NOTES[kind].format(cap=spec.cap))
    return t


def paired_table(result: dict) -> tables.Table:
    rows = []
    for p in result["paired"]:
        rows.append([p["model"], f"{p['protocol']}:{p['level']:g}", dict((s, t) for s, t, _ in SUBSETS)[p["subset"]],
                     str(p["n"]), f"{100 * p['mean']:+.2f}", f"[{100 * p['ci'][0]:+.2f}, {100 * p['ci'][1]:+.2f}]",
                     f"{100 * p['worse']:.0f} %"])
    return tables.Table("robustness_paired", "Paired IoU difference jittered − oracle on the same objects (points; "
                        f"bootstrap 95 % CI, {stats.N_BOOT} resamples)",
                        ["Model", "Prompts", "Objects", "n", "Mean Δ", "95 % CI", "Worse than oracle"], rows)


def headline(result: dict) -> str:
    """One sentence per model: what the SAM-paper setting (box-jitter 0.1) costs against the oracle prompts."""
    out = []
    for p in result["paired"]:
        if p["subset"] == "all" and abs(p["level"] - 0.1) < 1e-9:
            out.append(f"{p['model']}: {p['protocol']} 0.1 changes mean IoU by {100 * p['mean']:+.2f} points "
                       f"(95 % CI [{100 * p['ci'][0]:+.2f}, {100 * p['ci'][1]:+.2f}], {p['n']} objects)")
    return "; ".join(out) + "." if out else "No jittered run shares objects with the oracle run."


def plot(result: dict, out_base: Path) -> list[Path]:
    from .plots import MARKERS, _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8), sharey=True)
    colors = plt.get_cmap("tab10").colors
    models = result["models"]
    styles = {BOX_JITTER: "-", GAUSSIAN_JITTER: "--"}
    for ax, (sname, stitle, _) in zip(axes, SUBSETS):
        for c in result["curves"]:
            if c["subset"] != sname or not c["points"]:
                continue
            i = models.index(c["model"])
            shift = {BOX_JITTER: -0.0015, GAUSSIAN_JITTER: 0.0015}[c["protocol"]] * (1 + i)  # keep error bars apart
            x = np.array([p["level"] for p in c["points"]]) + shift
            y = np.array([100 * p["mean"] for p in c["points"]])
            err = np.array([[100 * (p["mean"] - p["ci"][0]) for p in c["points"]], [100 * (p["ci"][1] - p["mean"]) for p in c["points"]]])
            ax.errorbar(x, y, yerr=err, fmt=MARKERS[i % len(MARKERS)], ls=styles[c["protocol"]], color=colors[i % len(colors)],
                        ms=5, capsize=2, lw=1.3, label=f"{c['model']}, {c['protocol']}")
        n = max((p["n"] for c in result["curves"] if c["subset"] == sname for p in c["points"]), default=0)
        ax.set_title(f"{stitle} (n ≤ {n})", fontsize=10)
        ax.set_xlabel("noise level (box-jitter σ / gaussian-jitter level)")
        ax.set_xticks(result["levels"])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean IoU (%)")
    handles, labs = axes[0].get_legend_handles_labels()
    fig.legend(handles, labs, loc="lower center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.05 * (len(labs) // 2)))
    fig.suptitle(f"IoU against prompt noise: {', '.join(result['datasets'])} (level 0 = oracle prompts)", fontsize=11)
    fig.tight_layout()
    paths = _save(fig, out_base)
    plt.close(fig)
    return paths


def write_summary(out: Path, result: dict) -> None:
    made = [protocol_table(result, k) for k in JITTERS] + [paired_table(result)]
    for t in made:
        atomic_write_text(out / f"{t.name}.csv", t.to_csv())
    pngs = plot(result, out / "robustness")
    cmd = ""
    if (out / "sweep.json").is_file():
        cmd = "Command: `" + " ".join(json.loads((out / "sweep.json").read_text()).get("argv", [])) + "`. "
    md = [f"# Prompt-noise sweep: {out.name}", "", cmd + f"Datasets: {', '.join(result['datasets'])}. Runs (one per protocol, "
          "never averaged together): " + ", ".join(f"`{r}` ({p})" for r, p in result["runs"].items()) + ".", "",
          f"**{headline(result)}**", ""]
    for t in made:
        md += [t.to_markdown(), ""]
    md.append(f"![IoU against prompt noise]({pngs[0].name})")
    atomic_write_text(out / "robustness.md", "\n".join(md) + "\n")
    atomic_write_json(out / "robustness.json", result, indent=1)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1:]
    p = argparse.ArgumentParser(prog="python -m benchmark.robustness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="comma-separated registry names, e.g. flip-tiny.authors,oracle-box")
    p.add_argument("--data", action="append", required=True, help="dataset spec(s), as for python -m benchmark")
    p.add_argument("--levels", default=",".join(f"{x:g}" for x in LEVELS), help="noise levels (default 0,0.05,0.1,0.2)")
    p.add_argument("--cap", type=float, default=DEFAULT_CAP, help="cap in px for both protocols (default 20)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--name", help="sweep folder under --results (default robustness_<models>_<data>)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed of the summary (runs take -- --seed)")
    p.add_argument("--summary-only", action="store_true", help="only rebuild the summary from the runs present")
    a = p.parse_args(argv)
    try:
        levels = sorted({float(x) for x in a.levels.split(",") if x.strip()} | {0.0})
    except ValueError:
        print(f"error: --levels {a.levels!r}: comma-separated numbers expected", file=sys.stderr)
        return 2
    name = a.name or "robustness_" + re.sub(r"[^A-Za-z0-9_.+-]+", "-", a.model.replace(",", "+")) + "_" + "+".join(
        re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(d.split("::")[0]).stem if d.split("::")[0].endswith(".json") else Path(d).name)
        for d in a.data)
    out = Path(a.results) / name
    out.mkdir(parents=True, exist_ok=True)
    if not a.summary_only:
        atomic_write_json(out / "sweep.json", {"argv": ["python", "-m", "benchmark.robustness", *sys.argv[1:]] if argv is None
                                              else list(argv) + (["--"] + extra if extra else []), "levels": levels, "cap": a.cap})
        codes = run_sweep(a.model, a.data, out, levels, a.cap, extra)
        bad = [str(s) for s, c in codes if c == 2]
        if bad:
            print(f"error: configuration error in the run(s) {bad}; see above", file=sys.stderr)
            return 2
    try:
        result = summarise(out, a.seed)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(headline(result))
    print(f"summary: {out / 'robustness.md'}")
    return 0


if __name__ == "__main__":
    from segcore.waitpolicy import apply_wait_policy

    apply_wait_policy()  # before the runs load torch (segcore/waitpolicy.py); this module's imports are torch-free
    sys.exit(main())
