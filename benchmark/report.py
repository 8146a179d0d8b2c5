"""Reports from the records alone: python -m benchmark.report RUN_DIR [--merge] [--no-latest] [--baseline MODEL].

Writes into RUN_DIR: table1/table3/sizes/ci/paired/status/counters as .md, .csv and .tex; heat maps, A − B
difference maps and trade-off plots as PNG (2×) and SVG under plots/; report.md; and one self-contained,
phone-readable report.html (figures embedded, no network) that opens with a headline: the best model, its
margin over a named baseline (the runner-up unless --baseline names one) with a 95 % interval and the share
of objects it does better on, and a model × object-size grid. The run details list every model variant of
every invocation recorded in run.json (its `invocations` list; older single-invocation files are read too).
results/latest then points at the run. Check the page in a browser with scripts/check_report.py.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import secrets
import shutil
import struct
import sys
import time
from pathlib import Path

import numpy as np

from . import plots, stats, tables
from .machine import code_version
from .models import iou_is_meaningful
from segcore.atomic import atomic_write_text
from segcore.prompt_protocols import ProtocolError, merge_prompt_set, parse_protocol
from segcore.records import SCHEMA_VERSION, merge as merge_records, read_frame, record_files, run_lock

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text)  # unique temp name: two reports of one run never share a temp file


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-")


_COUNTER_NAMES = {"objects_in_files": "Objects in files (× models)", "ok": "OK", "failed": "Failed",
                  "empty_masks_skipped": "Empty masks skipped", "area_filtered": "Filtered by area",
                  "already_done": "Already done"}  # the outcomes after the first add up to it (benchmark.runner.OUTCOMES)


def counters_table(run_dir: Path) -> tables.Table:
    """What each shard's last invocation counted (summary-*.json): every integer counter the file holds."""
    summaries = []
    for f in sorted(run_dir.glob("summary-*.json")):
        try:
            summaries.append((f, json.loads(f.read_text())))
        except (OSError, ValueError) as e:
            summaries.append((f, {"error": f"unreadable: {e}"}))
    keys = [k for k in _COUNTER_NAMES if any(k in s for _, s in summaries)]
    keys += [k for _, s in summaries for k, v in s.items() if isinstance(v, int) and not isinstance(v, bool) and k not in keys]
    keys = list(dict.fromkeys(keys))
    # one row per counter, one column per shard: the table stays narrow however many counters there are
    header = ["Counter"] + [f"Shard {s.get('shard', f.stem)}" for f, s in summaries]
    rows = [[_COUNTER_NAMES.get(k, k.replace("_", " ").capitalize())] + [str(s.get(k, tables.EMPTY)) for _, s in summaries]
            for k in keys]
    t = tables.Table("counters", "Run counters (last invocation of each shard)", header, rows, main=1)
    if not rows:
        t.notes.append("no summary files in this run folder")
    return t


# ---- run.json: every invocation, every model variant ----

def invocations(meta: dict) -> list[dict]:
    """The invocations of a run: run.json's `invocations` list when present, else the single invocation that
    older run.json files describe. Each: {started, argv (str), models: {label: info}, settings, machine}."""
    inv = meta.get("invocations")
    if isinstance(inv, list) and inv:
        out = []
        for i in inv:
            argv = i.get("argv")
            out.append({"started": i.get("started", ""), "argv": " ".join(map(str, argv)) if isinstance(argv, list) else str(argv or ""),
                        "models": i.get("models") if isinstance(i.get("models"), dict) else {},
                        "settings": i.get("settings") or {}, "machine": i.get("machine") or {},
                        "code_version": i.get("code_version") or (i.get("machine") or {}).get("code_version")})
        return out
    settings = meta.get("settings") or {}
    extra = settings.get("extra") or {}
    argv = extra.get("argv") or extra.get("command_line") or ""
    return [{"started": meta.get("updated") or meta.get("created", ""), "argv": " ".join(argv) if isinstance(argv, list) else str(argv),
             "models": meta.get("models") if isinstance(meta.get("models"), dict) else {}, "settings": settings,
             "machine": meta.get("machine") or {}, "code_version": meta.get("code_version"), "single": True}]


_SOURCES = {"authors": "the authors' published weights", "project": "weights trained by this project",
            "random": "random initialisation: timing only, IoU n/a", "official": "the official published weights",
            "oracle": "no weights", "none": "no weights"}


def explain(model: str, weights: str) -> str:
    """One line on what a variant is, for run.json files that do not carry the registry's description."""
    base = model.split(".", 1)[0]
    if base == "oracle-box":
        return "not a model: fills each prompt's ground-truth box, i.e. the IoU a box prompt alone gives (a floor)"
    if base == "noop":
        return "not a model: returns empty masks without work, to measure the harness's own overhead (IoU n/a)"
    src = _SOURCES.get(tables.weights_source(weights), f"weights {tables.weights_source(weights)}")
    if base.startswith("flip-"):
        if base.endswith("-h"):
            return (f"FLIP-{base[5:-2].title()} with hierarchical refinement (the paper's FLIPh): a coarse grid over the "
                    f"box, then only uncertain pixels re-queried at finer scales; {src}")
        return f"FLIP-{base[5:].title()}, 5σ mode: every pixel of the prompt's μ ± 5σ box is queried; {src}"
    return f"{base}: box-prompted baseline, {src}"


def variants(df, invs: list[dict]) -> list[dict]:
    """Every (model, weights) in the records with its label, weights id, parameters, mode, the command of the
    invocation that ran it and a one-line description."""
    pairs = tables.model_order(df)
    labels = tables.short_labels(pairs)
    out = []
    for m, w in pairs:
        rec = df[(df["model"] == m) & (df["weights_id"] == w)]
        info, cmd, started = {}, None, None
        for inv in invs:  # the latest invocation that ran this variant
            for key, mi in inv["models"].items():
                if not isinstance(mi, dict):
                    continue
                if (key == m or mi.get("registry_name") == m) and str(mi.get("weights_id", w)) == str(w):
                    info, cmd, started = mi, inv["argv"], inv["started"]
        mode = info.get("mode")
        if not mode and "mode" in rec.columns:
            modes = [x for x in dict.fromkeys(rec["mode"].dropna().astype(str)) if x]
            mode = ", ".join(modes) if modes else None
        if not mode and m.startswith("flip-"):
            mode = "hierarchical (from the -h name)" if m.split(".", 1)[0].endswith("-h") else "5sigma (the default; not recorded)"
        params = rec["num_parameters"].dropna()
        out.append({"label": labels[(m, w)], "model": m, "weights": str(w), "mode": mode or tables.EMPTY,
                    "params": tables.fmt_params(params.iloc[0] if len(params) else None),
                    "description": info.get("description") or explain(m, str(w)), "command": cmd, "started": started})
    return out


# ---- numbers for the figures ----

def model_points(df, seed: int = 0) -> list[dict]:
    """One point per model with meaningful IoU: Average IoU (mean of dataset means) with a stratified bootstrap
    95 % CI, params, median time per object (ms) with its interquartile range."""
    pts = []
    pairs = tables.model_order(df)
    labels = tables.short_labels(pairs)
    ok = tables.valid_iou(df)
    datasets = list(dict.fromkeys(df["dataset"]))
    for m, w in pairs:
        if not iou_is_meaningful(w):
            continue
        sub = ok[(ok["model"] == m) & (ok["weights_id"] == w)]
        groups = [sub[sub["dataset"] == d]["iou"].to_numpy(float) for d in datasets]
        if any(len(g) == 0 for g in groups):
            continue
        allm = df[(df["model"] == m) & (df["weights_id"] == w)]
        t = sub["time_object"].to_numpy(float) * 1e3
        t = t[np.isfinite(t)]
        pts.append({"label": labels[(m, w)], "iou": float(np.mean([g.mean() for g in groups])),
                    "iou_ci": stats.bootstrap_average_ci(groups, stats._rng(seed, "tradeoff", m, w)),
                    "params": float(allm["num_parameters"].dropna().iloc[0]) if allm["num_parameters"].notna().any() else float("nan"),
                    "time_ms": float(np.median(t)) if t.size else float("nan"),
                    "time_iqr": (float(np.quantile(t, 0.25)), float(np.quantile(t, 0.75))) if t.size else None})
    return pts


def difference_pairs(df, head: dict | None) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """A − B pairs drawn as difference maps: the headline's best model against every other model with IoU."""
    if not head:
        return []
    pairs = [p for p in tables.model_order(df) if iou_is_meaningful(p[1])]
    labels = tables.short_labels(tables.model_order(df))
    best = [p for p in pairs if labels[p] == head["best"]]
    return [(best[0], p) for p in pairs if best and p != best[0]]


def make_report(run_dir, merge: bool = False, latest: bool = True, seed: int | None = None, baseline: str | None = None) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if not record_files(run_dir):
        raise FileNotFoundError(f"{run_dir}: no records (records.csv or records/part-*.csv)")
    with run_lock(run_dir):  # concurrent merges/reports of one run take turns (each one sees every part file)
        out = _make_report(run_dir, merge, seed, baseline)
    if latest:
        point_latest(run_dir)
    return out


def read_run_json(run_dir: Path) -> dict:
    """run.json as a dict ({} when absent); ValueError naming the file when it is unreadable or not an object."""
    path = run_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds a json {type(meta).__name__}, not the object the benchmark writes")
    return meta


def _make_report(run_dir: Path, merge: bool, seed, baseline) -> Path:
    if merge:
        merge_records(run_dir)
        merge_prompt_set(run_dir)
    meta = read_run_json(run_dir)
    invs = invocations(meta) if meta else []
    if seed is None:
        seed = int(meta.get("settings", {}).get("seed", 0) or 0)
    df = read_frame(run_dir)
    model_names = [m for inv in invs for m in (inv["settings"].get("models") or list(inv["models"]))]
    order = {m: i for i, m in enumerate(dict.fromkeys(model_names))}
    if order:  # the run's model order, not the merged file's alphabetical one
        df = df.assign(_o=df["model"].map(lambda m: order.get(m, len(order)))).sort_values("_o", kind="stable").drop(columns="_o")

    prompts = prompt_description(df, meta)
    head = stats.headline(df, seed, baseline)
    if head is not None:
        head["prompts"] = prompts
        head["misses"] = misses_note(df, head)
    made = [tables.table1(df), tables.table3(df), tables.size_table(df), stats.ci_table(df, seed),
            stats.paired_table(df, seed), tables.status_table(df), counters_table(run_dir)]
    if (df["status"] == "miss").any() or tables.protocols(df)[0].startswith("detections"):
        made.insert(2, stats.miss_table(df, seed))
    for t in made[:-2]:  # every table of IoU or objects says which prompts produced it
        t.caption += f" (prompts: {tables.protocols(df)[0]})"
    for t in made:
        _write(run_dir / f"{t.name}.md", t.to_markdown())
        _write(run_dir / f"{t.name}.csv", t.to_csv())
        _write(run_dir / f"{t.name}.tex", t.to_latex())

    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    for old in list(plot_dir.glob("*.png")) + list(plot_dir.glob("*.svg")):
        old.unlink(missing_ok=True)  # figures of models no longer in the records must not linger
    figures: dict[str, list[tuple[str, Path]]] = {"maps": [], "diffs": [], "tradeoffs": []}
    ok = tables.valid_iou(df)
    pairs = tables.model_order(df)
    labels = tables.short_labels(pairs)
    for m, w in pairs:
        sub = ok[(ok["model"] == m) & (ok["weights_id"] == w)]
        if sub.empty:
            continue
        maps = plots.model_heatmaps(sub, labels[(m, w)], plot_dir, _slug(labels[(m, w)]))
        figures["maps"] += [(f"{labels[(m, w)]}: mean IoU over relative mask area and image resolution", maps["resolution"][0]),
                            (f"{labels[(m, w)]}: mean IoU over relative and absolute mask area (Fig. 7)", maps["absolute"][0])]
    keys = ["dataset", "image_id", "object_id"]
    for a, b in difference_pairs(df, head):
        xa = ok[(ok["model"] == a[0]) & (ok["weights_id"] == a[1])]
        xb = ok[(ok["model"] == b[0]) & (ok["weights_id"] == b[1])][keys + ["iou"]]
        j = xa[keys + ["iou", "area_ratio", "width", "height"]].merge(xb, on=keys, suffixes=("_a", "_b"))
        if j.empty:
            continue
        png = plots.difference_heatmap(j, labels[a], labels[b], plot_dir / f"diff_{_slug(labels[a])}_minus_{_slug(labels[b])}")[0]
        figures["diffs"].append((f"{labels[a]} − {labels[b]}: mean IoU difference (points) on the {len(j)} objects both "
                                 "segmented; blue: A better, red: B better", png))
    pts = model_points(df, seed)
    left_out = [labels[p] for p in pairs if labels[p] not in {q["label"] for q in pts}]
    note = f"; not plotted (no IoU on every dataset): {', '.join(left_out)}" if left_out else ""
    if pts:
        figures["tradeoffs"].append(("Average IoU (95 % CI) against parameters" + note, plots.tradeoff_plot(pts, "params", "parameters", plot_dir / "tradeoff_params")[0]))
        figures["tradeoffs"].append(("Average IoU (95 % CI) against the median time per object; horizontal bars: "
                                     "interquartile range of the times" + note, plots.tradeoff_plot(pts, "time_ms", "median time per object (ms)",
                                                                                             plot_dir / "tradeoff_time", xerr_key="time_iqr")[0]))
    var = variants(df, invs)
    now = ReportContext.now(run_dir, meta)

    md = [f"# Benchmark report: {run_dir.name}", "", f"Records: {len(df)} rows (schema v{SCHEMA_VERSION}). Generated {now.generated}.", "",
          headline_markdown(head), ""]
    seen: set[str] = set()
    for t in made:
        md.append(t.to_markdown(notes=False))
        new = [n for n in t.notes if n not in seen]
        seen.update(new)
        md += [f"- {n}" for n in new] + [""]
    md += ["## Models", ""] + [f"- **{v['label']}**: {v['description']}. Weights `{v['weights']}`, mode {v['mode']}, "
                               f"command `{v['command'] or 'not recorded'}`" for v in var] + [""]
    md += [f"![{cap}](plots/{p.name})" for group in figures.values() for cap, p in group]
    _write(run_dir / "report.md", "\n".join(md) + "\n")
    _write(run_dir / "report.html", render_html(run_dir.name, made, figures, meta, invs, var, head, len(df), now))
    _write(run_dir / "summary.txt", terminal_summary(df, head))
    return run_dir / "report.html"


def terminal_summary(df, head: dict | None) -> str:
    """The headline and the model × object-subset table, as the CLI prints them after a run (also summary.txt)."""
    return headline_sentence(head) + "\n\n" + stats.terminal_table(df, head).to_text()


# ---- HTML ----

class ReportContext:
    """What the report says about when and where it was made (next to what run.json says about the run)."""

    def __init__(self, generated, tz, load, code_version):
        self.generated, self.tz, self.load, self.code_version = generated, tz, load, code_version

    @classmethod
    def now(cls, run_dir: Path, meta: dict):
        try:
            load = tuple(round(x, 2) for x in os.getloadavg())
        except OSError:
            load = None
        return cls(time.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)"), time.strftime("%Z, UTC%z"), load, code_version(ROOT))


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def prompt_description(df, meta: dict) -> str:
    """The one prompt protocol of the records, described; records of several protocols are an error (their
    numbers must never be averaged together)."""
    found = tables.protocols(df)
    if len(found) > 1:
        raise ValueError(f"the records hold several prompt protocols {found}: runs with different prompts are never "
                         "averaged together; report them from separate run folders")
    info = meta.get("prompts") if isinstance(meta.get("prompts"), dict) else {}
    if info.get("replayed_from"):
        return f"{found[0]}, replayed from the saved prompt set {info['replayed_from']}"
    try:
        return parse_protocol(found[0]).describe()
    except ProtocolError:
        return found[0]


def misses_note(df, head: dict) -> str | None:
    """Detections protocol: how many of the best model's objects no detection prompted, and its mean with them as 0."""
    rows = [r for r in head["grid"]["rows"] if r[0] == head["best"]]
    if not rows or not (df["status"] == "miss").any():
        return None
    m, w = rows[0][1]
    sub = df[(df["model"] == m) & (df["weights_id"] == w)]
    found = tables.valid_iou(sub)["iou"].to_numpy(float)
    misses = int((sub["status"] == "miss").sum())
    total = len(found) + misses
    return (f"{misses} of its {total} objects ({100 * misses / total:.1f} %) had no matching detection; with misses "
            f"scored 0 its mean IoU is {100 * found.sum() / total:.2f} % (misses table)")


def headline_sentence(head: dict | None) -> str:
    if head is None:
        return "No model in this run has a meaningful IoU (random weights or no model): nothing to rank."
    s = (f"Prompts: {head['prompts']}. " if head.get("prompts") else "") + f"{head['best']} has the highest mean IoU, {head['best_iou']:.2f} % over {head['n']} objects"
    if head.get("misses"):
        s += f" ({head['misses']})"
    p = head.get("paired")
    if head.get("baseline") is None:
        return s + "; it is the only model with a meaningful IoU, so there is no baseline to compare with."
    if p is None:
        return s + f"; it shares no object with the baseline {head['baseline']}, so there is no paired comparison."
    lo, hi = p["ci"]
    return (s + f": {100 * p['mean']:+.2f} points over {head['baseline']} ({head['baseline_why']}; 95 % CI "
            f"[{100 * lo:+.2f}, {100 * hi:+.2f}] on the {p['n']} objects both segmented), better on {_pct(p['better'])} "
            f"of them, equal on {_pct(p['equal'])}, worse on {_pct(p['worse'])}.")


def headline_markdown(head: dict | None) -> str:
    out = [f"**{headline_sentence(head)}**"]
    if head:
        g = head["grid"]
        out += ["", "| Model | " + " | ".join(g["columns"]) + " |", "|:---|" + "---:|" * len(g["columns"])]
        for i, (label, _, cells) in enumerate(g["rows"]):
            vals = []
            for j, (v, n) in enumerate(cells):
                txt = tables.EMPTY if not np.isfinite(v) else f"{v:.2f}"
                txt = f"**{txt}**" if i in g["best"].get(j, []) else txt
                vals.append(txt + f" (n={n}{', few' if 0 < n < stats.SMALL_SAMPLE else ''})")
            out.append(f"| {label} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def headline_html(head: dict | None) -> str:
    e = html.escape
    out = [f"<p class='headline'>{e(headline_sentence(head))}</p>"]
    if not head:
        return "".join(out)
    g = head["grid"]
    cols = "".join(f"<th scope='col' class='num'{' data-main' if j == 0 else ''}>{e(c)}</th>" for j, c in enumerate(g["columns"]))
    body, small = [], False
    for i, (label, _, cells) in enumerate(g["rows"]):
        tds = []
        for j, (v, n) in enumerate(cells):
            if not np.isfinite(v):
                tds.append(f"<td class='num'>{tables.EMPTY} <span class='n'>n=0</span></td>")
                continue
            val = f"{v:.2f}"
            if i in g["best"].get(j, []):
                val = f"<strong>{val}</strong>"
            flag = n < stats.SMALL_SAMPLE
            small |= flag
            tds.append(f"<td class='num{' few' if flag else ''}'>{val} <span class='n'>n={n}{'†' if flag else ''}</span></td>")
        body.append(f"<tr><td class='txt'>{e(label)}</td>{''.join(tds)}</tr>")
    out.append("<p class='notes'>Mean IoU (%) by object subset, all datasets pooled; best per column in bold.</p>"
               f"<p class='more'>⇆ the table continues to the right: scroll it sideways</p>"
               f"<div class='scroll'><table class='data grid'><thead><tr><th scope='col' class='txt'>Model</th>{cols}</tr></thead>"
               f"<tbody>{''.join(body)}</tbody></table></div>")
    if small:
        out.append(f"<p class='notes'>† fewer than {stats.SMALL_SAMPLE} objects: the mean is unreliable.</p>")
    return "".join(out)


def png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


def figure_html(cap: str, png: Path) -> str:
    """A 2× PNG embedded at half its pixel size (sharp on high-density screens), scaled down to fit."""
    e = html.escape
    w, h = png_size(png)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{e(cap)}' width='{w // 2}' height='{h // 2}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(cap)}</figcaption></figure>")


STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:0 auto;padding:12px 16px;color:#222;line-height:1.45}
h1{font-size:1.5em;overflow-wrap:anywhere}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em;margin:1.2em 0 .3em}
.headline{font-size:1.1em;background:#eef5ee;border-left:4px solid #3a7;padding:.6em .8em}
.scroll{overflow-x:auto;max-width:100%;margin:.3em 0 .6em;
 background:linear-gradient(to right,#fff 30%,rgba(255,255,255,0)),linear-gradient(to left,#fff 30%,rgba(255,255,255,0)) 100% 0,
 radial-gradient(farthest-side at 0 50%,rgba(0,0,0,.25),rgba(0,0,0,0)),radial-gradient(farthest-side at 100% 50%,rgba(0,0,0,.25),rgba(0,0,0,0)) 100% 0;
 background-repeat:no-repeat;background-size:40px 100%,40px 100%,14px 100%,14px 100%;background-attachment:local,local,scroll,scroll}
.more{display:none;font-size:.85em;color:#555;margin:.2em 0 0}.more.on{display:block}
table.data{border-collapse:separate;border-spacing:0;font-size:.92em}
table.data caption{text-align:left;font-size:.9em;color:#555;padding-bottom:.3em;caption-side:top}
table.data th,table.data td{padding:4px 10px;border-bottom:1px solid #e2e2e2;white-space:nowrap}
table.data th{background:#f3f3f3;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}.txt{text-align:left}
table.data tr>:first-child{position:sticky;left:0;background:#fff;z-index:1;box-shadow:inset -1px 0 0 #ccc}
table.data thead tr>:first-child{background:#f3f3f3}
.n{color:#666;font-size:.85em}.few{background:#fff6e0}
.notes{font-size:.88em;color:#555;margin:.2em 0 1em}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,460px),1fr));gap:18px;align-items:start}
figure{margin:0;min-width:0}figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:.88em;color:#444;margin-top:.3em}
.variant{margin:.6em 0;padding-left:.8em;border-left:3px solid #ddd}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.85em}
code{overflow-wrap:anywhere;background:#f5f5f5;padding:0 .2em}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;max-width:100%}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dl.kv dd{margin:0;overflow-wrap:anywhere;min-width:0}
@media (max-width:600px){body{padding:8px 10px}.headline{font-size:1em}dl.kv{grid-template-columns:1fr}dl.kv dd{margin-left:1em}}
"""


# Shows the "table continues" line above every table wider than its scroll box (and hides it when it fits).
SCROLL_HINT_JS = """
(function(){function upd(){document.querySelectorAll('.scroll').forEach(function(b){var h=b.previousElementSibling;
if(!h||!h.classList.contains('more'))return;var more=b.scrollWidth>b.clientWidth+1;h.classList.toggle('on',more);});}
window.addEventListener('load',upd);window.addEventListener('resize',upd);})();
"""


def _kv(items) -> str:
    e = html.escape
    return "<dl class='kv'>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def run_details_html(meta: dict, invs: list[dict], var: list[dict], now: ReportContext) -> str:
    e = html.escape
    out = ["<h2 id='details'>Run details</h2><h3>Models compared</h3>"]
    for v in var:
        cmd = (f"<code>{e(v['command'])}</code>" if v["command"] else
               "not recorded (this run.json keeps only its last invocation's models)")
        out.append(f"<div class='variant'><strong>{e(v['label'])}</strong>: {e(v['description'])}.<br>"
                   f"weights <code>{e(v['weights'])}</code> · {e(v['params'])} parameters · mode {e(str(v['mode']))}<br>"
                   f"command: {cmd}</div>")
    out.append("<p class='notes'>Labels: a model name alone when it ran with one set of weights; with several, the source of "
               "the weights as a tag (<code>.authors</code>: the authors' published file, <code>.project</code>: trained "
               "here). <code>-h</code>: FLIP with hierarchical refinement. <code>oracle-box</code>: the prompt's box "
               "filled, not a model.</p>")
    machine = meta.get("machine") or {}
    load_run = machine.get("load_average_1_5_15min")
    recorded = [inv.get("code_version") for inv in invs if inv.get("code_version")]
    out.append("<h3>Where and when</h3>" + _kv([
        ("invocations", e(str(len(invs))) + ("" if not any(i.get("single") for i in invs) else
                                              " recorded (older run.json: only the last one is kept)")),
        ("run created / updated", e(f"{meta.get('created', '?')} / {meta.get('updated', '?')}")),
        ("code version of the run", e(", ".join(dict.fromkeys(recorded))) if recorded else "not recorded in run.json"),
        ("code version of this report", f"<code>{e(now.code_version)}</code>"),
        ("report generated", e(now.generated)),
        ("time zone", e(now.tz) + " (run.json times carry their UTC offset)"),
        ("machine load during the run (1, 5, 15 min)", e(str(load_run)) if load_run else "not recorded"),
        ("machine load when the report was made", e(str(now.load)) if now.load else "unknown"),
        ("machine", e(", ".join(str(machine.get(k)) for k in ("cpu_model", "cpu_count", "platform") if machine.get(k))) or "not recorded"),
        ("torch threads", e(str(meta.get("torch_threads", "not recorded")))),
    ]))
    out.append("<h3>Invocations</h3>")
    for k, inv in enumerate(invs, 1):
        models = ", ".join(inv["models"]) or "not recorded"
        out.append(f"<details><summary>{k}. {e(str(inv['started']))}: {e(models)}</summary>"
                   + _kv([("command", f"<code>{e(inv['argv'] or 'not recorded')}</code>"),
                          ("machine load (1, 5, 15 min)", e(str(inv["machine"].get("load_average_1_5_15min", "not recorded")))),
                          ("code version", e(str(inv.get("code_version") or "not recorded")))])
                   + f"<pre>{e(json.dumps(inv['settings'], indent=2, default=str))}</pre></details>")
    out.append("<h3>Raw records of the run</h3>")
    for name, key in (("Models (run.json)", "models"), ("Datasets", "datasets"), ("Settings of the last invocation", "settings"),
                      ("Machine", "machine")):
        out.append(f"<details><summary>{e(name)}</summary><pre>{e(json.dumps(meta.get(key, {}), indent=2, default=str))}</pre></details>")
    out.append(f"<details><summary>run.json in full</summary><pre>{e(json.dumps(meta, indent=2, default=str))}</pre></details>")
    return "".join(out)


def render_html(title: str, made, figures: dict, meta: dict, invs: list[dict], var: list[dict], head, n_rows: int,
                now: ReportContext) -> str:
    e = html.escape
    seen: set[str] = set()
    parts = []
    for t in made:
        new = [n for n in t.notes if n not in seen]  # each footnote once, under the first table that needs it
        seen.update(new)
        parts.append(t.to_html(notes=new))
    figs = []
    for key, name in (("maps", "IoU maps"), ("diffs", "Differences between models"), ("tradeoffs", "Trade-offs")):
        if figures.get(key):
            figs.append(f"<h3>{name}</h3><div class='figs'>" + "".join(figure_html(c, p) for c, p in figures[key]) + "</div>")
    if figures.get("maps"):
        figs.insert(0, "<p class='notes'>Maps: each cell shows its mean IoU (%) in bold (difference maps: in points) "
                       "and its number of objects (n); only bins holding objects are shown.</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>Benchmark report: {e(title)}</h1>{headline_html(head)}"
            f"<p class='notes'>{n_rows} records, schema v{SCHEMA_VERSION}. Generated {e(now.generated)}. "
            "<a href='#details'>Run details</a> below.</p>"
            "<h2>Tables</h2>" + "".join(parts) + "<h2>Figures</h2>" + "".join(figs)
            + run_details_html(meta, invs, var, now) + f"<script>{SCROLL_HINT_JS}</script></body></html>\n")


LATEST = "latest"
COPY_MARK = ".flip-suite-latest-copy"  # marks a `latest` folder this suite copied (where symlinks are impossible)


def point_latest(run_dir: Path) -> Path | None:
    """<results>/latest → this run: a relative symlink, swapped in atomically; where symlinks are not possible, a
    copy marked as the suite's own. Nothing the suite did not create is ever deleted: a real `latest` folder or
    file (a results tree copied without symlinks) is left as it is, with a note, and None is returned."""
    real = Path(run_dir).resolve()
    if real.name == LATEST:  # the run itself is (or is reached through) `latest`: nothing to point
        return None
    link = real.parent / LATEST
    if link.is_symlink() and link.resolve() == real:
        return link
    ours_copy = link.is_dir() and not link.is_symlink() and (link / COPY_MARK).is_file()
    if (link.exists() or link.is_symlink()) and not link.is_symlink() and not ours_copy:
        print(f"note: {link} is a real {'folder' if link.is_dir() else 'file'}, not a link made by this suite: "
              "left as it is (results/latest not updated)", file=sys.stderr)
        return None
    tmp = real.parent / f".{LATEST}.{secrets.token_hex(4)}.tmp"
    try:
        os.symlink(real.name, tmp)
        if ours_copy:
            _remove_own_copy(link)
        os.replace(tmp, link)
        return link
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
    try:  # no symlinks here: a marked copy, built beside and renamed in
        shutil.copytree(real, tmp, symlinks=True)
        (tmp / COPY_MARK).write_text(f"a copy of {real.name} made by benchmark.report; safe to delete\n")
        if link.is_dir() and (link / COPY_MARK).is_file():
            _remove_own_copy(link)
        os.replace(tmp, link)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"note: could not point {link} at {real.name}: {e}", file=sys.stderr)
        return None
    return link


def _remove_own_copy(link: Path) -> None:
    """Delete a `latest` copy, only after checking once more that this suite made it."""
    if link.is_symlink() or not (link / COPY_MARK).is_file():
        raise OSError(f"{link} is not a copy made by this suite")
    trash = link.with_name(f".{LATEST}.{secrets.token_hex(4)}.old")
    os.replace(link, trash)
    shutil.rmtree(trash)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run folder under results/ (holding run.json and records)")
    p.add_argument("--merge", action="store_true", help="first fold all shard part files into records.csv")
    p.add_argument("--no-latest", dest="latest", action="store_false", help="do not point results/latest at this run")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the run's seed)")
    p.add_argument("--baseline", help="model the headline compares the best one with: a label as in the tables "
                                      "(e.g. flip-tiny.project) or a model name (default: the runner-up)")
    a = p.parse_args(argv)
    try:
        out = make_report(a.run_dir, merge=a.merge, latest=a.latest, seed=a.seed, baseline=a.baseline)
    except (OSError, ValueError) as e:  # missing or unreadable run files, a lock held too long, a read-only folder
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
