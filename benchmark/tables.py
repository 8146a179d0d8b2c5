"""The paper's tables computed from a records DataFrame: Table 1 (all objects), Table 3 (objects < 1 % of the
image), COCO absolute size splits, failure counts. One Table object renders to Markdown, CSV, LaTeX and HTML."""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np

from segcore.metrics import MEDIUM_MAX, SMALL_MAX
from .models import iou_is_meaningful

SMALL_OBJECT_RATIO = 0.01  # Table 3: relative mask area < 1 % (strict, spec §7.4)
NA_RANDOM = "n/a (random weights)"
NA_NONE = "n/a (no model)"
EMPTY = "–"


@dataclass
class Table:
    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        esc = lambda s: str(s).replace("|", "\\|")
        lines = ["| " + " | ".join(map(esc, self.header)) + " |", "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(map(esc, r)) + " |" for r in self.rows]
        out = f"**{self.caption}**\n\n" + "\n".join(lines) + "\n"
        if self.notes:
            out += "\n" + "\n".join(f"- {n}" for n in self.notes) + "\n"
        return out

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

        cols = "l" + "r" * (len(self.header) - 1)
        body = [" & ".join(map(tex, self.header)) + " \\\\", "\\midrule"] + [" & ".join(map(tex, r)) + " \\\\" for r in self.rows]
        return ("\\begin{table}[t]\n\\centering\n\\caption{" + tex(self.caption) + "}\n\\begin{tabular}{" + cols + "}\n\\toprule\n"
                + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}\n\\end{table}\n")

    def to_html(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(str(h))}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in self.rows)
        notes = "".join(f"<li>{e(n)}</li>" for n in self.notes)
        return (f"<h3>{e(self.caption)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                + (f"<ul class='notes'>{notes}</ul>" if notes else ""))


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


def model_order(df) -> list[tuple[str, str]]:
    """(model, weights_id) in order of first appearance, stable for golden tests."""
    seen = []
    for m, w in zip(df["model"], df["weights_id"]):
        if (m, w) not in seen:
            seen.append((m, w))
    return seen


def model_label(model: str, weights: str, all_pairs) -> str:
    """The model name, with the weights id when one model appears with several weights."""
    return model if sum(1 for m, _ in all_pairs if m == model) == 1 else f"{model} [{weights}]"


def na_reason(weights: str) -> str:
    return NA_RANDOM if str(weights) == "random" else NA_NONE


def _stats(x: np.ndarray):
    return float(np.mean(x)), float(np.std(x))  # population std, like np.std in the authors' scripts


def iou_table(df, name: str, caption: str, subset=None) -> Table:
    """Rows = models; columns Params, Time (ms) per object, amortised time, one 'mean ± std' IoU per dataset,
    and Average = mean of dataset means ± mean of dataset stds (the paper's convention)."""
    datasets = list(dict.fromkeys(df["dataset"]))
    pairs = model_order(df)
    sub = df if subset is None else df[subset(df)]
    rows = []
    for m, w in pairs:
        mdf = df[(df["model"] == m) & (df["weights_id"] == w)]
        params = mdf["num_parameters"].dropna()
        ok = sub[(sub["model"] == m) & (sub["weights_id"] == w) & (sub["status"] == "ok")]  # times of this table's objects
        row = [model_label(m, w, pairs), fmt_params(params.iloc[0] if len(params) else None),
               fmt_ms(float(np.nanmean(ok["time_object"])) if len(ok) and ok["time_object"].notna().any() else float("nan")),
               fmt_ms(float(np.nanmean(ok["time_amortised"])) if len(ok) and ok["time_amortised"].notna().any() else float("nan"))]
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
    header = ["Model", "Params", "Time (ms)", "Amortised (ms)"] + [f"{d} IoU (%)" for d in datasets] + ["Average"]
    notes = ["IoU: mean ± std (population) over objects; Average = mean of dataset means ± mean of dataset stds.",
             "Time (ms): the model's own time per object (image encoder counted once per object); Amortised: the image's "
             "model time divided by its objects. Data loading excluded; warm-up excluded."]
    return Table(name, caption, header, rows, notes)


def table1(df) -> Table:
    return iou_table(df, "table1", "Table 1: mean IoU on all objects")


def table3(df) -> Table:
    return iou_table(df, "table3", f"Table 3: mean IoU on objects smaller than {SMALL_OBJECT_RATIO:.0%} of the image",
                     subset=lambda d: d["area_ratio"] < SMALL_OBJECT_RATIO)


def size_table(df) -> Table:
    """COCO absolute size splits: small < 32², medium < 96², large otherwise (pixels)."""
    pairs = model_order(df)
    rows = []
    for m, w in pairs:
        for d in dict.fromkeys(df["dataset"]):
            sub = df[(df["model"] == m) & (df["weights_id"] == w) & (df["dataset"] == d)]
            row = [model_label(m, w, pairs), d]
            a = sub["area_px"].astype(float)
            for lo, hi in ((0, SMALL_MAX), (SMALL_MAX, MEDIUM_MAX), (MEDIUM_MAX, math.inf)):
                part = sub[(a >= lo) & (a < hi)]
                if not iou_is_meaningful(w):
                    row.append(na_reason(w) + f" (n={len(part)})")
                    continue
                v = valid_iou(part)["iou"].to_numpy(float)
                row.append(f"{fmt_iou(*_stats(v))} (n={len(v)})" if len(v) else f"{EMPTY} (n=0)")
            rows.append(row)
    header = ["Model", "Dataset", "Small < 32² px", "Medium < 96² px", "Large ≥ 96² px"]
    return Table("sizes", "Mean IoU (%) by COCO absolute size", header, rows)


def status_table(df) -> Table:
    pairs = model_order(df)
    rows = []
    for m, w in pairs:
        for d in dict.fromkeys(df["dataset"]):
            sub = df[(df["model"] == m) & (df["weights_id"] == w) & (df["dataset"] == d)]
            failed = sub[sub["status"] != "ok"]
            top = failed["reason"].astype(str).str.split(":").str[0].value_counts().head(3)
            rows.append([model_label(m, w, pairs), str(w), d, str(int((sub["status"] == "ok").sum())), str(len(failed)),
                         "; ".join(f"{k} ×{v}" for k, v in top.items()) or EMPTY])
    return Table("status", "Objects per model and dataset", ["Model", "Weights", "Dataset", "OK", "Failed", "Main failure causes"], rows)
