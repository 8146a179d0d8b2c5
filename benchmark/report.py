"""Reports from the records alone: python -m benchmark.report RUN_DIR [--merge] [--latest].

Writes into RUN_DIR: table1/table3/sizes/ci/paired/status as .md, .csv and .tex; heat maps and trade-off plots
as PNG and SVG under plots/; report.md and one self-contained report.html (images embedded as base64) with the
run's settings and machine info. results/latest then points at the run.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import plots, stats, tables
from .models import iou_is_meaningful
from segcore.records import SCHEMA_VERSION, merge as merge_records, read_frame, record_files


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-")


def counters_table(run_dir: Path) -> tables.Table:
    """What each shard's last invocation skipped or failed (summary-*.json): empty masks, area filter, resume."""
    keys = ("ok", "failed", "empty_masks_skipped", "area_filtered", "already_done")
    rows = []
    for f in sorted(run_dir.glob("summary-*.json")):
        s = json.loads(f.read_text())
        rows.append([str(s.get("shard", f.stem))] + [str(s.get(k, "")) for k in keys])
    t = tables.Table("counters", "Run counters (last invocation of each shard)", ["Shard", "OK", "Failed", "Empty masks skipped",
                                                                                  "Filtered by area", "Already done"], rows)
    if not rows:
        t.notes.append("no summary files in this run folder")
    return t


def model_points(df) -> list[dict]:
    """One point per model with meaningful IoU: Average IoU (mean of dataset means), params, time per object."""
    pts = []
    pairs = tables.model_order(df)
    ok = tables.valid_iou(df)
    datasets = list(dict.fromkeys(df["dataset"]))
    for m, w in pairs:
        if not iou_is_meaningful(w):
            continue
        sub = ok[(ok["model"] == m) & (ok["weights_id"] == w)]
        means = [sub[sub["dataset"] == d]["iou"].mean() for d in datasets if (sub["dataset"] == d).any()]
        if len(means) != len(datasets):
            continue
        allm = df[(df["model"] == m) & (df["weights_id"] == w)]
        pts.append({"label": tables.model_label(m, w, pairs), "iou": float(np.mean(means)),
                    "params": float(allm["num_parameters"].dropna().iloc[0]) if allm["num_parameters"].notna().any() else float("nan"),
                    "time_ms": float(np.nanmean(sub["time_object"])) * 1e3 if sub["time_object"].notna().any() else float("nan")})
    return pts


def make_report(run_dir, merge: bool = False, latest: bool = True, seed: int | None = None) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if not record_files(run_dir):
        raise FileNotFoundError(f"{run_dir}: no records (records.csv or records/part-*.csv)")
    if merge:
        merge_records(run_dir)
    meta = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    if seed is None:
        seed = int(meta.get("settings", {}).get("seed", 0) or 0)
    df = read_frame(run_dir)
    order = {m: i for i, m in enumerate((meta.get("settings") or {}).get("models", []))}
    if order:  # the run's model order, not the merged file's alphabetical one
        df = df.assign(_o=df["model"].map(lambda m: order.get(m, len(order)))).sort_values("_o", kind="stable").drop(columns="_o")

    made = [tables.table1(df), tables.table3(df), tables.size_table(df), stats.ci_table(df, seed),
            stats.paired_table(df, seed), tables.status_table(df), counters_table(run_dir)]
    for t in made:
        _write(run_dir / f"{t.name}.md", t.to_markdown())
        _write(run_dir / f"{t.name}.csv", t.to_csv())
        _write(run_dir / f"{t.name}.tex", t.to_latex())

    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    figures: list[tuple[str, Path]] = []
    ok = tables.valid_iou(df)
    pairs = tables.model_order(df)
    for m, w in pairs:
        sub = ok[(ok["model"] == m) & (ok["weights_id"] == w)]
        if sub.empty:
            continue
        label = tables.model_label(m, w, pairs)
        maps = plots.model_heatmaps(sub, label, plot_dir, _slug(f"{m}_{w}"))
        figures += [(f"{label}: IoU over relative mask area and image resolution", maps["resolution"][0]),
                    (f"{label}: IoU over relative and absolute mask area (Fig. 7)", maps["absolute"][0])]
    pts = model_points(df)
    if pts:
        figures.append(("Trade-off: Average IoU vs parameters", plots.tradeoff_plot(pts, "params", "parameters", plot_dir / "tradeoff_params")[0]))
        figures.append(("Trade-off: Average IoU vs time per object", plots.tradeoff_plot(pts, "time_ms", "time per object (ms)", plot_dir / "tradeoff_time")[0]))

    md = [f"# Benchmark report: {run_dir.name}", "", f"Records: {len(df)} rows (schema v{SCHEMA_VERSION}). "
          f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.", ""]
    md += [t.to_markdown() for t in made]
    md += [f"![{cap}](plots/{p.name})" for cap, p in figures]
    _write(run_dir / "report.md", "\n".join(md) + "\n")
    _write(run_dir / "report.html", render_html(run_dir.name, made, figures, meta, len(df)))

    if latest:
        point_latest(run_dir)
    return run_dir / "report.html"


def render_html(title: str, made, figures, meta: dict, n_rows: int) -> str:
    e = html.escape
    imgs = []
    for cap, png in figures:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        imgs.append(f"<figure><img alt='{e(cap)}' src='data:image/png;base64,{data}'><figcaption>{e(cap)}</figcaption></figure>")
    settings = json.dumps(meta.get("settings", {}), indent=2, default=str)
    machine = json.dumps(meta.get("machine", {}), indent=2, default=str)
    models = json.dumps(meta.get("models", {}), indent=2, default=str)
    datasets = json.dumps(meta.get("datasets", []), indent=2, default=str)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}figure{display:inline-block;margin:1em}"
             "img{max-width:560px}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}.notes{font-size:90%;color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{style}</style></head><body>"
            f"<h1>Benchmark report: {e(title)}</h1><p>{n_rows} records, schema v{SCHEMA_VERSION}. Generated "
            f"{e(time.strftime('%Y-%m-%d %H:%M:%S'))}. Torch threads: {e(str(meta.get('torch_threads')))}.</p>"
            + "".join(t.to_html() for t in made) + "<h2>Figures</h2>" + "".join(imgs)
            + f"<h2>Models</h2><pre>{e(models)}</pre><h2>Datasets</h2><pre>{e(datasets)}</pre>"
            + f"<h2>Settings</h2><pre>{e(settings)}</pre><h2>Machine</h2><pre>{e(machine)}</pre></body></html>\n")


def point_latest(run_dir: Path) -> Path:
    """results/latest → this run: a relative symlink, or a copy where symlinks are not possible."""
    link = run_dir.parent / "latest"
    if link.resolve() == run_dir.resolve() and link != run_dir:
        return link
    tmp = run_dir.parent / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink() if tmp.is_symlink() or tmp.is_file() else shutil.rmtree(tmp)
    try:
        os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)
    except OSError:
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        shutil.copytree(run_dir, link)
    return link


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run folder under results/ (holding run.json and records)")
    p.add_argument("--merge", action="store_true", help="first fold all shard part files into records.csv")
    p.add_argument("--no-latest", dest="latest", action="store_false", help="do not point results/latest at this run")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the run's seed)")
    a = p.parse_args(argv)
    try:
        out = make_report(a.run_dir, merge=a.merge, latest=a.latest, seed=a.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
