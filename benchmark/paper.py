r"""python -m benchmark.paper: the paper's Tables 1 and 3 and the Fig. 7 heat maps, for whatever is present.

  make paper [PAPER_DATA=dir] [MODELS=flip-tiny,sam-b]
  python -m benchmark.paper --paper-data /data/flip-eval
  python -m benchmark.paper --paper-data /data/flip-eval --executor slurm --shards 16 --slurm-partition gpu
  python -m benchmark.paper --tables-only                 (tables again from the records of results/paper)

Datasets: the six published evaluation files (Hypersim, KITTI-360, OpenImages, COCO, LVIS, ObjaScale), found
in --paper-data by their published names (benchmark/paper_numbers.toml: `files`, then `match`; subfolders one
level deep are searched too), plus ObjaScale mini (--mini, default data/objascale-mini; `make paper` renders it
when missing). Models: every FLIP variant in both modes (5σ and -h) and every baseline whose weights are on this
machine (or the --models given). Everything runs through the benchmark's runner into one run folder
(results/paper by default), so a rerun resumes and --executor slurm shards it with submitit exactly like
`python -m benchmark`.

Written into the run folder, beside the benchmark's own report: paper_table1.{md,csv,tex} (IoU per model and
dataset: paper, measured, measured − paper with a bootstrap 95 % interval), paper_table1_summary.* (parameters,
time per object and the Average, paper beside measured), paper_table3.* (objects < 1 % of the image),
fig7/heatmap_*.png|svg (mean IoU over relative × absolute mask area on the ObjaScale sets) and paper.md.
A cell that cannot be filled says why (dataset or weights not present and where to get them; a paper value not
transcribed). The paper's numbers and their sources are in benchmark/paper_numbers.toml.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segcore.atomic import atomic_write_text
from segcore.prompt_protocols import ORACLE, ProtocolError, merge_prompt_set, parse_protocol

NUMBERS_FILE = Path(__file__).with_name("paper_numbers.toml")
DEFAULT_MINI = "data/objascale-mini"
MINI_NAME = "ObjaScale-mini"
NOT_BASELINES = ("noop", "oracle-box")  # the harness's references: run only when named in --models
NA = "n/a"


class PaperError(ValueError):
    """A configuration problem: nothing was run."""


def load_numbers(path=NUMBERS_FILE) -> dict:
    with open(path, "rb") as f:
        numbers = tomllib.load(f)
    keys = [d["key"] for d in numbers["datasets"]]
    for m, row in numbers.get("models", {}).items():
        for table in ("table1", "table1_datasets"):
            unknown = set(row.get(table, {})) - set(keys) - {"average"}
            if unknown:
                raise PaperError(f"{path}: models.{m}.{table} names unknown datasets {sorted(unknown)}")
        for k in ("source", "table1_datasets_source"):
            if k in row and row[k] not in numbers["sources"]:
                raise PaperError(f"{path}: models.{m}.{k} = {row[k]!r} is not a key of [sources]")
    return numbers


# ---------------------------------------------------------------- datasets

@dataclass
class PaperDataset:
    key: str
    name: str  # the column name, also the records' dataset name
    url: str | None
    path: Path | None = None
    why_missing: str = ""  # short: goes into every cell of this dataset
    in_paper: bool = True
    expected: str = ""  # the file name looked for

    @property
    def spec(self) -> str:
        from segcore.datasets import escape_spec

        return f"{re.sub(r'[^A-Za-z0-9_.+-]', '-', self.name)}={escape_spec(self.path)}"


def _candidates(data_dir: Path) -> list[Path]:
    files = [p for p in data_dir.iterdir() if p.is_file()]
    for sub in sorted(p for p in data_dir.iterdir() if p.is_dir()):  # the README's datasets/COCO/coco_val2017.hdf5
        files += [p for p in sub.iterdir() if p.is_file()]
    return sorted(files)


def find_datasets(data_dir, numbers: dict, mini: str | None = DEFAULT_MINI) -> list[PaperDataset]:
    """The six published sets, each found in data_dir by its published name (exact `files` first, then `match`),
    and ObjaScale mini. A set that is not there carries the reason and where to get it."""
    out = []
    files = []
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise PaperError(f"--paper-data {data_dir}: not a folder")
        files = _candidates(data_dir)
    for d in numbers["datasets"]:
        ds = PaperDataset(d["key"], d["name"], d.get("url"))
        exact = [p for p in files if p.name in d.get("files", [])]
        matched = exact or [p for p in files if re.search(d["match"], p.name, re.IGNORECASE)]
        names = " or ".join(d.get("files", [])) or f"a file matching {d['match']}"
        if len(matched) > 1:
            raise PaperError(f"{d['name']}: several files in {data_dir} look like it ({', '.join(map(str, matched))}); "
                             "keep one")
        ds.expected = names
        if matched:
            ds.path = matched[0]
        else:
            ds.why_missing = f"dataset not present (download: {d.get('url')})"
        out.append(ds)
    if mini:
        ds = PaperDataset("mini", MINI_NAME, None, in_paper=False)
        if Path(mini).exists():
            ds.path = Path(mini)
        else:
            ds.why_missing = f"dataset not present (render it: make objascale OUT={mini})"
        out.append(ds)
    return out


# ---------------------------------------------------------------- models

@dataclass
class PaperModel:
    """One row group of the tables: a registry model (flip-tiny, sam-b ...) with its paper numbers and the
    variants (full registry names) that run, or the reason none does."""
    model: str
    paper: dict = field(default_factory=dict)
    run: list[str] = field(default_factory=list)
    why_not_run: str = ""


def _where_to_get(model: str) -> str:
    return f"make weights MODEL={model}"


def plan_models(numbers: dict, requested: list[str] | None = None) -> list[PaperModel]:
    """Every model of the paper plus every FLIP variant and baseline in the registry. Without `requested`, each
    runs with every weights tag present on this machine; with it, only the names given run (untagged names take
    the registry's default tag)."""
    from segcore import registry

    from . import models as model_registry

    all_names = model_registry.names()
    entries = [registry.get(n) for n in all_names]
    groups: dict[str, PaperModel] = {m: PaperModel(m, dict(row)) for m, row in numbers.get("models", {}).items()}
    usable = [e for e in entries if e.tag != "random" and e.model not in NOT_BASELINES]
    for e in usable:
        groups.setdefault(e.model, PaperModel(e.model))
    if requested:
        for name in requested:
            try:
                full = model_registry.resolve_name(name)
            except registry.ModelError as e:
                raise PaperError(str(e)) from None
            model = registry.split_name(full)[0]
            groups.setdefault(model, PaperModel(model)).run.append(full)
        for g in groups.values():
            if g.run:
                continue
            present = [e for e in usable if e.model == g.model and e.local_files() is not None]
            g.why_not_run = ("not run: not in MODELS" if present else
                             f"weights not present ({_where_to_get(g.model)})" if any(e.model == g.model for e in usable) else
                             "not registered here: install the baselines extra (pip install -e '.[baselines]')")
        return list(groups.values())
    for g in groups.values():
        mine = [e for e in usable if e.model == g.model]
        g.run = [e.name for e in mine if e.local_files() is not None]
        if not g.run:
            g.why_not_run = (f"weights not present ({_where_to_get(g.model)})" if mine else
                             "not registered here: install the baselines extra (pip install -e '.[baselines]')")
    return list(groups.values())


# ---------------------------------------------------------------- tables

def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _diff_cells(values: np.ndarray | list, paper: float | None, seed: int, *names, groups=None) -> tuple[str, str]:
    """(measured − paper, its 95 % interval): the bootstrap interval of the measured mean (or of the mean of
    dataset means, groups) shifted by the paper's value, a constant."""
    from . import stats

    if paper is None:
        return f"{NA}: no paper value", f"{NA}: no paper value"
    rng = stats._rng(seed, "paper", *names)
    if groups is not None:
        mean = 100 * float(np.mean([g.mean() for g in groups]))
        lo, hi = stats.bootstrap_average_ci(groups, rng)
    else:
        mean = 100 * float(np.mean(values))
        lo, hi = stats.bootstrap_mean_ci(np.asarray(values, float), rng)
    return f"{mean - paper:+.2f}", f"[{100 * lo - paper:+.2f}, {100 * hi - paper:+.2f}]"


def _paper_value(pm: PaperModel, table: str, ds: PaperDataset | None, numbers: dict) -> tuple[float | None, str]:
    """(value, reason when None)."""
    if ds is not None and not ds.in_paper:
        return None, f"{NA}: not a paper dataset (this suite's set)"
    if not pm.paper or "paper_name" not in pm.paper:
        return None, f"{NA}: not in the paper"
    if table == "table3":
        return None, "not transcribed (Table 3)"
    key = "average" if ds is None else ds.key
    v = pm.paper.get("table1", {}).get(key, pm.paper.get("table1_datasets", {}).get(key))
    if v is None:
        return None, "not transcribed"
    return float(v), ""


def _label_weights(df, full: str) -> list[tuple[str, str]]:
    """(label, weights id) of a registry name in the records (one per weights file it ran with)."""
    if df is None or df.empty:
        return []
    return list(dict.fromkeys(df.loc[df["model"] == full, "weights_id"].astype(str)))


def iou_rows(df, plan: list[PaperModel], datasets: list[PaperDataset], numbers: dict, table: str, seed: int):
    """Long-form rows of Table 1 or 3: model, weights, dataset, paper, measured, objects, Δ, Δ CI."""
    from .tables import valid_iou

    sub = df
    if df is not None and table == "table3":
        sub = df[df["area_ratio"] < 0.01]
    ok = valid_iou(sub) if sub is not None and not sub.empty else None
    paper_sets = [d for d in datasets if d.in_paper]
    rows = []
    for pm in plan:
        variants = [(full, w) for full in pm.run for w in (_label_weights(df, full) or [None])]
        if not variants:
            pv, why = _paper_value(pm, table, None, numbers)
            rows.append([pm.model, "–", "Average (6 sets)", _fmt(pv) if pv is not None else why, pm.why_not_run, "0",
                         f"{NA}: not measured", f"{NA}: not measured"])
            continue
        for full, w in variants:
            groups, missing = [], []
            for ds in datasets + [None]:
                pv, pwhy = _paper_value(pm, table, ds, numbers)
                pcell = _fmt(pv) if pv is not None else pwhy
                if ds is None:  # the Average over the six paper sets
                    name = "Average (6 sets)"
                    if w is None:
                        mcell, n, d1, d2 = "not measured: no records (the run failed or was interrupted)", "0", None, None
                    elif missing:
                        mcell = f"{NA}: needs all six paper sets ({len(missing)} not measured)"
                        n, d1, d2 = str(sum(len(g) for g in groups)), None, None
                    else:
                        mcell = f"{100 * np.mean([g.mean() for g in groups]):.2f} ± {100 * np.mean([g.std() for g in groups]):.2f}"
                        n = str(sum(len(g) for g in groups))
                        d1, d2 = _diff_cells(None, pv, seed, table, full, w, "avg", groups=groups)
                else:
                    name = ds.name
                    if ds.path is None:
                        mcell, n, d1, d2 = ds.why_missing, "0", None, None
                    elif w is None:
                        mcell, n, d1, d2 = "not measured: no records (the run failed or was interrupted)", "0", None, None
                    else:
                        v = ok[(ok["model"] == full) & (ok["weights_id"] == w) & (ok["dataset"] == ds.name)]["iou"].to_numpy(float) \
                            if ok is not None else np.array([])
                        n = str(len(v))
                        if len(v) == 0:
                            mcell, d1, d2 = _empty_reason(df, full, w, ds.name, table), None, None
                        else:
                            mcell = f"{100 * v.mean():.2f} ± {100 * v.std():.2f}"
                            d1, d2 = _diff_cells(v, pv, seed, table, full, w, ds.name)
                        if ds.in_paper and len(v):
                            groups.append(v)
                    if ds.in_paper and (ds.path is None or w is None or n == "0"):
                        missing.append(ds.name)
                if d1 is None:
                    measured = mcell[:1].isdigit()
                    d1 = d2 = (f"{NA}: neither value" if pv is None and not measured else
                               f"{NA}: no paper value" if pv is None else f"{NA}: not measured")
                rows.append([pm.model, _short_weights(w), name, pcell, mcell, n, d1, d2])
    header = ["Model", "Weights", "Dataset", "Paper IoU (%)", "Measured IoU (%)", "Objects", "Δ measured − paper (points)",
              "Δ 95 % CI"]
    return header, rows


def _short_weights(w) -> str:
    if w is None:
        return "–"
    from .tables import weights_file, weights_hash, weights_source

    return f"{weights_source(w)}:{weights_file(w)}" + (f"@{weights_hash(w)}" if "sha256" in str(w) else "")


def _empty_reason(df, full, w, dataset, table) -> str:
    """Why a model × dataset cell has no IoU although both were run."""
    from .models import iou_is_meaningful

    if not iou_is_meaningful(w):
        return f"{NA}: weights {w} (IoU not meaningful)"
    rec = df[(df["model"] == full) & (df["weights_id"] == w) & (df["dataset"] == dataset)]
    if rec.empty:
        return "not measured: no records (the run failed or was interrupted)"
    if (rec["status"] != "ok").all():
        return f"not measured: all {len(rec)} objects failed (status.md)"
    if table == "table3":
        return f"{NA}: no object < 1 % of the image in this set"
    return f"{NA}: no object with an IoU"


def fmt_params(n) -> str:
    from .tables import fmt_params as f

    return f(n) if n else "0"


def summary_rows(df, plan: list[PaperModel], datasets, numbers: dict, seed: int):
    """Table 1's model columns: parameters, time per object and the Average, paper beside measured."""
    header, long_rows = iou_rows(df, plan, datasets, numbers, "table1", seed)
    avg = {(r[0], r[1]): r for r in long_rows if r[2].startswith("Average")}
    rows = []
    for pm in plan:
        p_params = pm.paper.get("params_m")
        p_time = pm.paper.get("time_ms")
        why_params = "not transcribed" if pm.paper.get("paper_name") else f"{NA}: not in the paper"
        variants = [(full, w) for full in pm.run for w in (_label_weights(df, full) or [None])] or [(None, None)]
        for full, w in variants:
            a = avg.get((pm.model, _short_weights(w)))
            why = ""
            if full is None or w is None:
                why = pm.why_not_run or "not measured: no records (the run failed or was interrupted)"
                m_params = m_time = why.split(" (")[0]
            else:
                rec = df[(df["model"] == full) & (df["weights_id"] == w)]
                params = rec["num_parameters"].dropna()
                m_params = fmt_params(params.iloc[0]) if len(params) else "not recorded"
                t = rec.loc[rec["status"] == "ok", "time_object"].to_numpy(float)
                t = t[np.isfinite(t)]
                m_time = f"{1e3 * np.median(t):.2f}" if t.size else "not measured: no successful object"
            rows.append([pm.model, _short_weights(w), f"{p_params}M" if p_params is not None else why_params,
                         m_params, _fmt(p_time) if p_time is not None else why_params, m_time,
                         a[3] if a else why_params, a[4] if a else why, a[6] if a else f"{NA}: not measured",
                         a[7] if a else f"{NA}: not measured"])
    header = ["Model", "Weights", "Paper params", "Measured params", "Paper time (ms, RTX 4090)",
              "Measured time, median (ms, this machine)", "Paper Average IoU (%)", "Measured Average IoU (%)",
              "Δ (points)", "Δ 95 % CI"]
    return header, rows


def make_tables(df, plan, datasets, numbers, seed: int = 0):
    from .tables import Table

    src = numbers["sources"]
    cite = (f"Paper: {numbers['paper']['authors']}, \"{numbers['paper']['title']}\", arXiv {numbers['paper']['arxiv']}"
            f"{numbers['paper']['version']}; values and their sources in benchmark/{NUMBERS_FILE.name}.")
    notes = [cite, "Measured: mean ± std (population) of IoU over objects; Average = mean of the six paper sets' means ± "
             "mean of their stds (the paper's convention). Δ = measured − paper in points; its 95 % interval is the "
             "percentile bootstrap of the measured mean (2000 resamples, stratified by dataset for the Average), "
             "the paper's value taken as exact."]
    notes.append("Paper values are those of the authors' weights: a row with other weights (e.g. project) compares "
                 "another model with them. 'not transcribed': the paper has the value but it was not found verbatim "
                 f"in the sources below, so benchmark/{NUMBERS_FILE.name} leaves it out.")
    notes += [f"Source '{k}': {v}" for k, v in src.items()]
    for d in datasets:
        if d.path is None and d.in_paper:
            notes.append(f"{d.name} not present: put {d.expected} into the PAPER_DATA folder (make paper PAPER_DATA=dir); "
                         f"download: {d.url}")
        elif d.path is None:
            notes.append(f"{d.name} not present: {d.why_missing}")
    if any(g.why_not_run.startswith("weights") for g in plan):
        notes.append("Weights not present: make weights MODEL=<model> (or python -m benchmark --model <model> --download), "
                     "then make paper again: the run resumes and adds the model.")
    h1, r1 = iou_rows(df, plan, datasets, numbers, "table1", seed)
    h3, r3 = iou_rows(df, plan, datasets, numbers, "table3", seed)
    hs, rs = summary_rows(df, plan, datasets, numbers, seed)
    t1 = Table("paper_table1", "Table 1: mean IoU (%) on all objects, paper beside measured", h1, r1, list(notes))
    ts = Table("paper_table1_summary", "Table 1: parameters, time per object and Average IoU, paper beside measured", hs, rs,
               [f"Paper times: {numbers['paper'].get('time_hardware')}; measured: the model's time per object "
                f"(benchmark records' time_object, median) on this machine."] + notes)
    t3 = Table("paper_table3", "Table 3: mean IoU (%) on objects smaller than 1 % of the image, paper beside measured",
               h3, r3, list(notes))
    return [t1, ts, t3]


# ---------------------------------------------------------------- Fig. 7

def make_heatmaps(df, datasets, out_dir: Path) -> list[Path]:
    """Fig. 7: mean IoU over relative × absolute mask area, per model and ObjaScale set (published and mini)."""
    from . import plots
    from .report import _slug
    from .tables import model_order, short_labels, valid_iou

    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob("*.png")) + list(out_dir.glob("*.svg")):
        old.unlink()
    if df is None or df.empty:
        return []
    ok = valid_iou(df)
    labels = short_labels(model_order(df))
    made = []
    for ds in (d for d in datasets if d.key in ("objascale", "mini") and d.path is not None):
        for (m, w), label in labels.items():
            sub = ok[(ok["model"] == m) & (ok["weights_id"] == w) & (ok["dataset"] == ds.name)]
            if sub.empty:
                continue
            mean, count = plots.heatmap_bins(sub["area_ratio"].to_numpy(float), sub["area_px"].to_numpy(float),
                                             sub["iou"].to_numpy(float), plots.REL_AREA_EDGES, plots.ABS_AREA_EDGES)
            made += plots.plot_heatmap(mean, count, plots.REL_AREA_EDGES, plots.ABS_AREA_EDGES, plots.REL_LABEL,
                                       plots.ABS_LABEL, f"{label} on {ds.name} ({len(sub)} objects)",
                                       out_dir / f"heatmap_{_slug(label)}_{_slug(ds.name)}")
    return made


def write_outputs(run_dir: Path, df, plan, datasets, numbers, seed: int = 0) -> Path:
    from .tables import protocols

    tables = make_tables(df, plan, datasets, numbers, seed)
    found = protocols(df) if df is not None else [ORACLE]
    if len(found) > 1:
        raise PaperError(f"{run_dir}: records of several prompt protocols {found}; they are never averaged together")
    for t in tables:  # the measured numbers say which prompts produced them (the paper's are oracle prompts)
        t.caption += f" (measured with prompts: {found[0]})"
    for t in tables:
        atomic_write_text(run_dir / f"{t.name}.md", t.to_markdown())
        atomic_write_text(run_dir / f"{t.name}.csv", t.to_csv())
        atomic_write_text(run_dir / f"{t.name}.tex", t.to_latex())
    maps = make_heatmaps(df, datasets, run_dir / "fig7")
    pngs = [p for p in maps if p.suffix == ".png"]
    try:
        described = parse_protocol(found[0]).describe()
    except ProtocolError:
        described = found[0]
    md = ["# The paper's tables, reproduced", "", f"Prompts of the measured runs: {described}.", ""]
    md += [t.to_markdown() for t in tables]
    md += ["## Fig. 7: mean IoU over relative and absolute mask area (ObjaScale sets)", ""]
    md += [f"![{p.stem}](fig7/{p.name})" for p in pngs] or [
        "No heat map: no ObjaScale set (published ObjaScale file or ObjaScale mini) was measured with a model that has "
        "a meaningful IoU."]
    out = run_dir / "paper.md"
    atomic_write_text(out, "\n".join(md) + "\n")
    return out, tables[1]


# ---------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.paper", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--paper-data", help="folder holding the published evaluation files under their published names "
                           "(PAPER_DATA; optional: missing sets get cells that say where to download them)")
    a("--mini", default=DEFAULT_MINI, help=f"ObjaScale mini (a data spec; default {DEFAULT_MINI})")
    a("--no-mini", dest="mini", action="store_const", const=None, help="leave ObjaScale mini out")
    a("--models", help="comma-separated registry names to run (default: every FLIP variant in both modes and every "
                       "baseline whose weights are present)")
    a("--prompt", default=ORACLE, metavar="PROTOCOL", help="prompt protocol (docs/prompts.md; default oracle, as the "
                                                        "paper); other protocols run into paper_<protocol> by default")
    a("--results", default="results", help="results folder (default results/)")
    a("--run", default="paper", help="run folder name under --results (default paper); a rerun resumes it")
    a("--tables-only", action="store_true", help="run nothing: tables and heat maps from the run folder's records")
    a("--numbers", default=str(NUMBERS_FILE), help="the paper's numbers (default benchmark/paper_numbers.toml)")
    a("--seed", type=int, default=0, help="run seed (samples, models' RNG, bootstrap); default 0")
    a("--limit", type=int, help="fixed random sample of this many objects per dataset (a quick look; the paper uses all)")
    a("--threads", type=int, help="torch intra-op threads")
    a("--warmup", type=int, help="untimed warm-up calls per model (default 2)")
    a("--device", help="cpu or cuda[:k]")
    a("--download", action="store_true", default=None, help="fetch missing published weights of the models named in --models")
    a("--no-boundary", action="store_true", help="skip boundary IoU (faster)")
    a("--no-progress", action="store_true", help="no progress bar")
    a("--shard", help="k/n: this process runs only images k, k+n, ... (then --tables-only when all are done)")
    a("--executor", choices=["local", "slurm", "submitit-local"], help="as python -m benchmark: slurm = one submitit job per shard")
    a("--shards", type=int, help="with --executor slurm: number of jobs")
    a("--slurm-partition", help="Slurm partition")
    a("--slurm-timeout-min", type=int, help="Slurm time limit per job in minutes (default 240)")
    a("--slurm-cpus", type=int, help="CPUs per Slurm job (default 4)")
    a("--slurm-gpus", type=int, help="GPUs per Slurm job (default 0)")
    return p


def bench_argv(args, plan: list[PaperModel], datasets: list[PaperDataset]) -> list[str]:
    """The python -m benchmark command line that runs everything present (one run folder, resumable)."""
    models = [n for g in plan for n in g.run]
    argv = ["--model", ",".join(models), "--results", args.results, "--run", args.run, "--seed", str(args.seed), "--no-latest",
            "--prompt", args.prompt]
    for d in datasets:
        if d.path is not None:
            argv += ["--data", d.spec]
    for flag in ("limit", "threads", "warmup", "device", "shard", "executor", "shards", "slurm_partition",
                 "slurm_timeout_min", "slurm_cpus", "slurm_gpus"):
        v = getattr(args, flag)
        if v is not None:
            argv += [f"--{flag.replace('_', '-')}", str(v)]
    argv += ["--download"] if args.download else []
    argv += ["--no-boundary"] if args.no_boundary else []
    argv += ["--no-progress"] if args.no_progress else []
    return argv


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = parse_protocol(args.prompt)
    except ProtocolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.prompt = str(spec)
    if args.run == "paper" and spec.kind != ORACLE:  # one protocol per run folder
        args.run = f"paper_{spec.slug()}"
    try:
        numbers = load_numbers(args.numbers)
        datasets = find_datasets(args.paper_data, numbers, args.mini)
        requested = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        plan = plan_models(numbers, requested)
    except (PaperError, OSError, tomllib.TOMLDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dir = Path(args.results) / args.run
    for d in datasets:
        print(f"{d.name:16s} {d.path if d.path else d.why_missing}")
    for g in plan:
        print(f"{g.model:16s} {', '.join(g.run) if g.run else g.why_not_run}")
    if not args.tables_only:
        if not any(g.run for g in plan):
            print("error: no model to run (no weights present); see the lines above", file=sys.stderr)
            return 2
        if not any(d.path for d in datasets):
            print("error: no dataset present; see the lines above", file=sys.stderr)
            return 2
        from .cli import main as bench_main

        rc = bench_main(bench_argv(args, plan, datasets))
        if rc == 2:
            return rc
        if args.shard and not args.shard.endswith("/1") and (args.executor or "local") == "local":
            print(f"shard {args.shard} done. When every shard has finished: python -m benchmark.paper --tables-only "
                  f"--run {args.run} (with the same --paper-data)")
            return 0
    from segcore.records import merge, read_frame, record_files

    df = None
    if record_files(run_dir):
        merge(run_dir)
        merge_prompt_set(run_dir)
        df = read_frame(run_dir)
    elif args.tables_only:
        print(f"note: no records in {run_dir}: every measured cell says so")
    try:
        out, summary = write_outputs(run_dir, df, plan, datasets, numbers, args.seed)
    except PaperError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n" + summary.to_markdown(notes=False))
    print(f"paper tables (Table 1 per dataset, Table 3, Fig. 7 heat maps): {out}")
    return 0


if __name__ == "__main__":
    from segcore.waitpolicy import apply_wait_policy

    apply_wait_policy()  # before the runner loads torch (segcore/waitpolicy.py); this module's imports are torch-free
    sys.exit(main())
