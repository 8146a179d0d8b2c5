"""The paper's tables computed from a records DataFrame: Table 1 (all objects), Table 3 (objects < 1 % of the
image), COCO absolute size splits, failure counts. One Table object renders to Markdown, CSV, LaTeX and HTML.

Models are named by short labels (short_labels): the model name, with the source of its weights as a tag
(`flip-tiny.authors`, `flip-tiny.project`) only when one model appears with several weights. The full weights
ids are listed once, in the report's run details. Columns that would only repeat another (Average with one
dataset, Dataset with one dataset, Amortised time equal to time per object) are left out.
"""
from __future__ import annotations

import csv
import html
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np

from segcore.metrics import MEDIUM_MAX, SMALL_MAX
from .models import iou_is_meaningful

SMALL_OBJECT_RATIO = 0.01  # Table 3: relative mask area < 1 % (strict, docs/flip.md §7.4)
NA_RANDOM = "n/a (random weights)"
NA_NONE = "n/a (no model)"
EMPTY = "–"
_NUMBER = re.compile(r"^[-+−]?[\d.,]+\s*(%|M|k)?$|^[-+]?\d")


def is_numeric_cell(s) -> bool:
    """Cells that read as numbers ('81.21 ± 16.71', '0.51M', '[+1.2, +3.4]', '–') are right-aligned, text left."""
    s = str(s).strip()
    return bool(_NUMBER.match(s)) or s.startswith(("[", "n/a", EMPTY + " "))


@dataclass
class Table:
    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    main: int | None = None  # the column a reader comes for (e.g. the first IoU): must show without scrolling
    wrap_first: bool = False  # the first column's "A − B" labels go on two lines in HTML

    def numeric_columns(self) -> list[bool]:
        """A column is numeric when every body cell reads as a number (the first column is always text)."""
        out = []
        for j in range(len(self.header)):
            cells = [r[j] for r in self.rows if j < len(r) and str(r[j]).strip() != EMPTY]  # '–' fits either
            out.append(j > 0 and bool(cells) and all(is_numeric_cell(c) for c in cells))
        return out

    def to_markdown(self, notes: bool = True) -> str:
        esc = lambda s: str(s).replace("|", "\\|")
        align = ["---:" if n else ":---" for n in self.numeric_columns()]
        lines = ["| " + " | ".join(map(esc, self.header)) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(map(esc, r)) + " |" for r in self.rows]
        out = f"**{self.caption}**\n\n" + "\n".join(lines) + "\n"
        if notes and self.notes:
            out += "\n" + "\n".join(f"- {n}" for n in self.notes) + "\n"
        return out

    def to_text(self) -> str:
        """Plain columns for a terminal: numbers right-aligned, text left."""
        cells = [list(map(str, self.header))] + [list(map(str, r)) for r in self.rows]
        widths = [max(len(r[j]) for r in cells if j < len(r)) for j in range(len(self.header))]
        num = self.numeric_columns()
        line = lambda r: "  ".join(c.rjust(w) if num[j] else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip()
        out = [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.header)
        w.writerows(self.rows)
        return buf.getvalue()

    def to_latex(self) -> str:
        def tex(s):
            s = str(s)
            for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"), ("<", "$<$"), (">", "$>$")):
                s = s.replace(a, b)
            return s.replace("±", "$\\pm$").replace("–", "--").replace("²", "$^2$")

        cols = "".join("r" if n else "l" for n in self.numeric_columns())
        body = [" & ".join(map(tex, self.header)) + " \\\\", "\\midrule"] + [" & ".join(map(tex, r)) + " \\\\" for r in self.rows]
        return ("\\begin{table}[t]\n\\centering\n\\caption{" + tex(self.caption) + "}\n\\begin{tabular}{" + cols + "}\n\\toprule\n"
                + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n")

    def to_html(self, notes=None) -> str:
        """A table in its own horizontal scroll box; numeric cells right-aligned and unbreakable; the first
        (model) column sticky. notes: the notes to print (default all; the report passes only unseen ones)."""
        e = html.escape
        num = self.numeric_columns()
        cls = lambda j: " class='num'" if num[j] else " class='txt'"
        main = lambda j: " data-main" if j == self.main else ""
        head = "".join(f"<th scope='col'{cls(j)}{main(j)}>{e(str(h))}</th>" for j, h in enumerate(self.header))
        def cell(j, c):  # a wrapped first column breaks only between the two labels of "A − B"
            return "<br>− ".join(e(x) for x in str(c).split(" − ")) if j == 0 and self.wrap_first else e(str(c))

        body = "".join("<tr>" + "".join(f"<td{cls(j)}>{cell(j, c)}</td>" for j, c in enumerate(r)) + "</tr>" for r in self.rows)
        notes = self.notes if notes is None else notes
        li = "".join(f"<li>{e(n)}</li>" for n in notes)
        return (f"<h3 id='{e(self.name)}'>{e(self.caption)}</h3>"
                "<p class='more'>⇆ the table continues to the right: scroll it sideways</p>"
                f"<div class='scroll'><table class='data'><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table></div>" + (f"<ul class='notes'>{li}</ul>" if li else ""))


def fmt_params(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return EMPTY
    n = int(n)
    return f"{n / 1e6:.2f}M" if n >= 10_000 else str(n)


def fmt_ms(seconds: float) -> str:
    return EMPTY if seconds is None or not np.isfinite(seconds) else f"{seconds * 1e3:.2f}"


def fmt_iou(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def valid_iou(df):
    """Rows whose IoU is a real measurement: status ok and trained/meaningful weights."""
    ok = (df["status"] == "ok") & df["weights_id"].map(lambda w: iou_is_meaningful(str(w))) & df["iou"].notna()
    return df[ok]


def protocols(df) -> list[str]:
    """The prompt protocols of the records (records before schema v3 carry none: oracle)."""
    if "prompt" not in df.columns:
        return ["oracle"]
    return list(dict.fromkeys(str(p) if p else "oracle" for p in df["prompt"])) or ["oracle"]


def model_order(df) -> list[tuple[str, str]]:
    """(model, weights_id) in order of first appearance, stable for golden tests."""
    seen = []
    for m, w in zip(df["model"], df["weights_id"]):
        if (m, w) not in seen:
            seen.append((m, w))
    return seen


def weights_source(weights: str) -> str:
    """'authors:flip-tiny-fused.onnx@sha256:ef53…' → 'authors'; 'random' → 'random'."""
    return str(weights).split(":", 1)[0]


def weights_file(weights: str) -> str:
    """'authors:flip-tiny-fused.onnx@sha256:ef53…' → 'flip-tiny-fused' (file stem, no hash)."""
    rest = str(weights).split(":", 1)[1] if ":" in str(weights) else str(weights)
    return re.sub(r"\.(onnx|pt|pth|ckpt|safetensors)$", "", rest.split("@", 1)[0])


def weights_hash(weights: str) -> str:
    m = re.search(r"sha256:([0-9a-f]+)", str(weights))
    return m.group(1)[:8] if m else str(weights)


def short_labels(pairs) -> dict[tuple[str, str], str]:
    """One short, unique label per (model, weights id): the model name alone when it appears once, else
    model.source (registry tag style), then model.source:file, then with 8 hex digits of the hash."""
    pairs = list(dict.fromkeys(pairs))
    out: dict[tuple[str, str], str] = {}
    for m in dict.fromkeys(p[0] for p in pairs):
        ws = [w for mm, w in pairs if mm == m]
        if len(ws) == 1:
            out[(m, ws[0])] = m
            continue
        for fmt in (lambda w: f"{m}.{weights_source(w)}", lambda w: f"{m}.{weights_source(w)}:{weights_file(w)}",
                    lambda w: f"{m}.{weights_source(w)}:{weights_file(w)}@{weights_hash(w)}", lambda w: f"{m} [{w}]"):
            labels = [fmt(w) for w in ws]
            if len(set(labels)) == len(labels):
                break
        out.update({(m, w): lab for w, lab in zip(ws, labels)})
    return out


def model_label(model: str, weights: str, all_pairs) -> str:
    """The short label of (model, weights) among all_pairs (see short_labels)."""
    return short_labels(all_pairs).get((model, weights), model)


def na_reason(weights: str) -> str:
    return NA_RANDOM if str(weights) == "random" else NA_NONE


def _stats(x: np.ndarray):
    return float(np.mean(x)), float(np.std(x))  # population std, like np.std in the authors' scripts


def _drop_columns(t: Table, names: list[str]) -> Table:
    keep = [j for j, h in enumerate(t.header) if h not in names]
    if t.main is not None:
        t.main = keep.index(t.main) if t.main in keep else None
    t.header = [t.header[j] for j in keep]
    t.rows = [[r[j] for j in keep] for r in t.rows]
    return t


def _finite_mean(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _finite_median(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


TIME_NOTE = ("Time: the model's own time per object in ms, mean and median over objects (image encoder counted once "
             "per object); Amortised: the image's model time divided by its objects (shown only where it differs). "
             "Data loading and warm-up excluded.")
IOU_NOTE = "IoU: mean ± std (population) over objects; Average = mean of dataset means ± mean of dataset stds."


def iou_table(df, name: str, caption: str, subset=None) -> Table:
    """Rows = models; columns Params, time per object (mean, median), amortised time, one 'mean ± std' IoU per
    dataset, and Average = mean of dataset means ± mean of dataset stds (the paper's convention)."""
    datasets = list(dict.fromkeys(df["dataset"]))
    pairs = model_order(df)
    labels = short_labels(pairs)
    sub = df if subset is None else df[subset(df)]
    rows = []
    amortised_differs = False
    for m, w in pairs:
        mdf = df[(df["model"] == m) & (df["weights_id"] == w)]
        params = mdf["num_parameters"].dropna()
        ok = sub[(sub["model"] == m) & (sub["weights_id"] == w) & (sub["status"] == "ok")]  # times of this table's objects
        t_obj, t_am = ok["time_object"].to_numpy(float), ok["time_amortised"].to_numpy(float)
        mean_t, mean_am = fmt_ms(_finite_mean(t_obj)), fmt_ms(_finite_mean(t_am))
        amortised_differs |= mean_t != mean_am
        row = [labels[(m, w)], fmt_params(params.iloc[0] if len(params) else None), mean_t, fmt_ms(_finite_median(t_obj)), mean_am]
        means, stds = [], []
        for d in datasets:
            if not iou_is_meaningful(w):
                row.append(na_reason(w))
                continue
            v = valid_iou(sub[(sub["model"] == m) & (sub["weights_id"] == w) & (sub["dataset"] == d)])["iou"].to_numpy(float)
            if len(v) == 0:
                row.append(EMPTY)
                continue
            mu, sd = _stats(v)
            means.append(mu)
            stds.append(sd)
            row.append(fmt_iou(mu, sd))
        if not iou_is_meaningful(w):
            row.append(na_reason(w))
        elif means and len(means) == len(datasets):
            row.append(fmt_iou(float(np.mean(means)), float(np.mean(stds))))
        else:
            row.append(EMPTY)
        rows.append(row)
    header = ["Model", "Params", "Time mean (ms)", "Time median (ms)", "Amortised (ms)"] + [f"{d} IoU (%)" for d in datasets] + ["Average"]
    order = [0] + list(range(5, len(header))) + [1, 2, 3, 4]  # the results first: a phone shows them without scrolling
    header, rows = [header[j] for j in order], [[r[j] for j in order] for r in rows]
    t = Table(name, caption, header, rows, [IOU_NOTE if len(datasets) > 1 else IOU_NOTE.split(";")[0] + ".", TIME_NOTE], main=1)
    drop = [] if amortised_differs else ["Amortised (ms)"]
    if len(datasets) == 1:
        drop.append("Average")  # equal to the one dataset's column
    return _drop_columns(t, drop)


def table1(df) -> Table:
    return iou_table(df, "table1", "Table 1: mean IoU on all objects")


def table3(df) -> Table:
    return iou_table(df, "table3", f"Table 3: mean IoU on objects smaller than {SMALL_OBJECT_RATIO:.0%} of the image",
                     subset=lambda d: d["area_ratio"] < SMALL_OBJECT_RATIO)


SIZE_BINS = (("Small < 32² px", 0, SMALL_MAX), ("Medium < 96² px", SMALL_MAX, MEDIUM_MAX), ("Large ≥ 96² px", MEDIUM_MAX, math.inf))


def _model_dataset_groups(df):
    """(row label, weights id, dataset, records) for every model × dataset, models in report order; and the datasets."""
    pairs = model_order(df)
    labels = short_labels(pairs)
    datasets = list(dict.fromkeys(df["dataset"]))
    groups = [(labels[(m, w)], w, d, df[(df["model"] == m) & (df["weights_id"] == w) & (df["dataset"] == d)])
              for m, w in pairs for d in datasets]
    return groups, datasets


def size_table(df) -> Table:
    """COCO absolute size splits: small < 32², medium < 96², large otherwise (pixels)."""
    groups, datasets = _model_dataset_groups(df)
    rows = []
    for label, w, d, sub in groups:
        row = [label, d]
        a = sub["area_px"].astype(float)
        for _, lo, hi in SIZE_BINS:
            part = sub[(a >= lo) & (a < hi)]
            if not iou_is_meaningful(w):
                row.append(na_reason(w) + f" (n={len(part)})")
                continue
            v = valid_iou(part)["iou"].to_numpy(float)
            row.append(f"{fmt_iou(*_stats(v))} (n={len(v)})" if len(v) else f"{EMPTY} (n=0)")
        rows.append(row)
    header = ["Model", "Dataset"] + [b[0] for b in SIZE_BINS]
    t = Table("sizes", "Mean IoU (%) by COCO absolute size", header, rows, main=2)
    return _drop_columns(t, ["Dataset"]) if len(datasets) == 1 else t


def status_table(df) -> Table:
    groups, datasets = _model_dataset_groups(df)
    rows = []
    for label, _w, d, sub in groups:
        failed = sub[sub["status"] == "failed"]
        top = failed["reason"].astype(str).str.split(":").str[0].value_counts().head(3)
        rows.append([label, d, str(int((sub["status"] == "ok").sum())), str(len(failed)),
                     str(int((sub["status"] == "miss").sum())), "; ".join(f"{k} ×{v}" for k, v in top.items()) or EMPTY])
    t = Table("status", "Objects per model and dataset",
              ["Model", "Dataset", "OK", "Failed", "Missed (no detection)", "Main failure causes"], rows)
    drop = (["Dataset"] if len(datasets) == 1 else []) + ([] if (df["status"] == "miss").any() else ["Missed (no detection)"])
    return _drop_columns(t, drop) if drop else t
