"""Bootstrap 95 % intervals for mean IoU and for paired differences between models on the same objects."""
from __future__ import annotations

import itertools
import zlib

import numpy as np

from .models import iou_is_meaningful
from .tables import (EMPTY, SIZE_BINS, SMALL_OBJECT_RATIO, Table, _finite_median, fmt_ms, model_order, na_reason,
                     short_labels, valid_iou)

N_BOOT = 2000


def _rng(seed: int, *names) -> np.random.Generator:
    """A generator per (run seed, what is resampled): results do not depend on table order."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(n).encode()) for n in names])


def _boot_means(x: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """n_boot means of resamples of x. Resamples in chunks so memory stays ~chunk·n."""
    means = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // x.size))
    for s in range(0, n_boot, chunk):
        e = min(n_boot, s + chunk)
        means[s:e] = x[rng.integers(0, x.size, size=(e - s, x.size))].mean(1)
    return means


def bootstrap_mean_ci(x: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT, level: float = 0.95):
    """Percentile bootstrap of the mean."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    means = _boot_means(x, rng, n_boot)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def bootstrap_average_ci(groups: list[np.ndarray], rng: np.random.Generator, n_boot: int = N_BOOT, level: float = 0.95):
    """Percentile bootstrap of the mean of group means (Table 1's Average over datasets), each group
    resampled on its own (stratified)."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        return float("nan"), float("nan")
    avg = np.mean([_boot_means(g, rng, n_boot) if g.size > 1 else np.full(n_boot, g[0]) for g in groups], axis=0)
    a = (1 - level) / 2
    return float(np.quantile(avg, a)), float(np.quantile(avg, 1 - a))


def ci_table(df, seed: int = 0) -> Table:
    pairs = model_order(df)
    labels = short_labels(pairs)
    rows = []
    for m, w in pairs:
        if not iou_is_meaningful(w):
            continue
        for d in dict.fromkeys(df["dataset"]):
            v = valid_iou(df[(df["model"] == m) & (df["weights_id"] == w) & (df["dataset"] == d)])["iou"].to_numpy(float)
            if not len(v):
                continue
            lo, hi = bootstrap_mean_ci(v, _rng(seed, "ci", m, w, d))
            rows.append([labels[(m, w)], f"{100 * v.mean():.2f}", f"[{100 * lo:.2f}, {100 * hi:.2f}]", d, str(len(v))])
    return Table("ci", f"Mean IoU (%) with bootstrap 95 % intervals ({N_BOOT} resamples)",
                 ["Model", "Mean IoU", "95 % CI", "Dataset", "Objects"], rows, main=1)  # results first


def paired_table(df, seed: int = 0) -> Table:
    """For every two models and dataset: IoU(A) − IoU(B) on the objects both segmented (status ok)."""
    pairs = [p for p in model_order(df) if iou_is_meaningful(p[1])]
    labels = short_labels(model_order(df))
    ok = valid_iou(df)
    rows = []
    for (ma, wa), (mb, wb) in itertools.combinations(pairs, 2):
        for d in dict.fromkeys(df["dataset"]):
            a = ok[(ok["model"] == ma) & (ok["weights_id"] == wa) & (ok["dataset"] == d)][["image_id", "object_id", "iou"]]
            b = ok[(ok["model"] == mb) & (ok["weights_id"] == wb) & (ok["dataset"] == d)][["image_id", "object_id", "iou"]]
            j = a.merge(b, on=["image_id", "object_id"], suffixes=("_a", "_b"))
            if j.empty:
                continue
            diff = (j["iou_a"] - j["iou_b"]).to_numpy(float)
            lo, hi = bootstrap_mean_ci(diff, _rng(seed, "paired", ma, wa, mb, wb, d))
            rows.append([f"{labels[(ma, wa)]} − {labels[(mb, wb)]}", f"{100 * diff.mean():+.2f}",
                         f"[{100 * lo:+.2f}, {100 * hi:+.2f}]", f"{100 * np.mean(diff > 0):.1f} %", d, str(len(diff))])
    # one "A − B" column that may wrap, then the results: a phone shows the difference without scrolling
    t = Table("paired", "Paired IoU differences A − B on the same objects (percentage points)",
              ["A − B", "Mean A − B", "95 % CI", "A better", "Dataset", "Objects"], rows, main=1, wrap_first=True)
    if not rows:
        t.notes.append(f"{EMPTY}: fewer than two models with meaningful IoU share objects in this run.")
    return t


def miss_table(df, seed: int = 0) -> Table:
    """Detections protocol: per model and dataset, how many objects no detection prompted, the mean IoU of the
    prompted ones, and the mean with every miss scored IoU 0 (with its bootstrap 95 % interval)."""
    rows = []
    labels = short_labels(model_order(df))
    for m, w in model_order(df):
        if not iou_is_meaningful(w):
            continue
        for d in dict.fromkeys(df["dataset"]):
            sub = df[(df["model"] == m) & (df["weights_id"] == w) & (df["dataset"] == d)]
            found = valid_iou(sub)["iou"].to_numpy(float)
            misses = int((sub["status"] == "miss").sum())
            if not len(found) and not misses:
                continue
            both = np.concatenate([found, np.zeros(misses)])
            lo, hi = bootstrap_mean_ci(both, _rng(seed, "misses", m, w, d))
            rows.append([labels[(m, w)], d, str(len(both)), str(misses), f"{100 * misses / len(both):.1f} %",
                         f"{100 * found.mean():.2f}" if len(found) else EMPTY, f"{100 * both.mean():.2f}",
                         f"[{100 * lo:.2f}, {100 * hi:.2f}]"])
    t = Table("misses", "Detector prompts: objects without a matching detection (misses) and mean IoU with misses as 0",
              ["Model", "Dataset", "Objects", "Misses", "Miss rate", "Mean IoU (prompted)", "Mean IoU with misses",
               "95 % CI (with misses)"], rows)
    t.notes.append("A miss: no detection overlaps the object's tight box with IoU ≥ 0.5 (greedy by score). "
                   "Failed objects are left out of both means.")
    return t


# ---- the headline: best model, its margin over a named baseline, and a model × object-subset grid ----

SMALL_SAMPLE = 10  # fewer objects than this: the cell is flagged as unreliable


def grid_columns():
    """(column name, row filter) of the headline grid: all objects, < 1 % of the image, COCO absolute sizes."""
    cols = [("All", lambda d: d["area_ratio"].notna() | d["area_ratio"].isna()),
            (f"< {SMALL_OBJECT_RATIO:.0%} of image", lambda d: d["area_ratio"] < SMALL_OBJECT_RATIO)]
    for name, lo, hi in SIZE_BINS:
        cols.append((name.replace(" px", ""), lambda d, lo=lo, hi=hi: (d["area_px"].astype(float) >= lo) & (d["area_px"].astype(float) < hi)))
    return cols


def headline_grid(df) -> dict:
    """Mean IoU (%) and object count per (model, column), over the objects of all datasets pooled. Models
    with meaningful IoU only. {"columns": [...], "rows": [(label, (m, w), [(mean or nan, n), ...])],
    "best": {column index: row index}}."""
    pairs = [p for p in model_order(df) if iou_is_meaningful(p[1])]
    labels = short_labels(model_order(df))
    ok = valid_iou(df)
    cols = grid_columns()
    rows = []
    for m, w in pairs:
        sub = ok[(ok["model"] == m) & (ok["weights_id"] == w)]
        cells = []
        for _, keep in cols:
            v = sub[keep(sub)]["iou"].to_numpy(float)
            cells.append((100 * float(v.mean()) if len(v) else float("nan"), int(len(v))))
        rows.append((labels[(m, w)], (m, w), cells))
    best = {}
    for j in range(len(cols)):
        vals = [(r[2][j][0], i) for i, r in enumerate(rows) if np.isfinite(r[2][j][0])]
        if vals:
            top = max(v for v, _ in vals)
            best[j] = [i for v, i in vals if round(v, 2) == round(top, 2)]  # ties at the printed precision share it
    return {"columns": [c[0] for c in cols], "rows": rows, "best": best}


def terminal_table(df, head: dict | None = None) -> Table:
    """What a run prints when it ends: every model × {all, < 1 %, COCO small/medium/large} mean IoU (%) with the
    object count (the headline grid, computed once), and the median model time per object (ms)."""
    grid = head["grid"] if head else headline_grid(df)
    by_pair = {r[1]: r[2] for r in grid["rows"]}
    labels = short_labels(model_order(df))
    rows = []
    for m, w in model_order(df):
        ok = df[(df["model"] == m) & (df["weights_id"] == w) & (df["status"] == "ok")]
        cells = by_pair.get((m, w))
        if cells is None:  # random weights / no model: no IoU, but the time is real
            iou = [na_reason(w)] * len(grid["columns"])
        else:
            iou = [f"{v:.2f} (n={n})" if np.isfinite(v) else f"{EMPTY} (n=0)" for v, n in cells]
        rows.append([labels[(m, w)], *iou, fmt_ms(_finite_median(ok["time_object"].to_numpy(float)))])
    header = ["Model", *grid["columns"], "Median ms/object"]
    return Table("terminal", "Mean IoU (%) by object subset, all datasets pooled", header, rows)


def paired_difference(df, a: tuple[str, str], b: tuple[str, str], seed: int = 0) -> dict | None:
    """IoU(a) − IoU(b) on the objects both segmented, over all datasets: mean, bootstrap 95 % CI, share of
    objects where a is better / equal / worse. None when they share no object."""
    ok = valid_iou(df)
    cols = ["dataset", "image_id", "object_id", "iou"]
    xa = ok[(ok["model"] == a[0]) & (ok["weights_id"] == a[1])][cols]
    xb = ok[(ok["model"] == b[0]) & (ok["weights_id"] == b[1])][cols]
    j = xa.merge(xb, on=["dataset", "image_id", "object_id"], suffixes=("_a", "_b"))
    if j.empty:
        return None
    diff = (j["iou_a"] - j["iou_b"]).to_numpy(float)
    lo, hi = bootstrap_mean_ci(diff, _rng(seed, "headline", *a, *b))
    return {"n": int(len(diff)), "mean": float(diff.mean()), "ci": (lo, hi), "better": float(np.mean(diff > 0)),
            "equal": float(np.mean(diff == 0)), "worse": float(np.mean(diff < 0))}


def headline(df, seed: int = 0, baseline: str | None = None) -> dict | None:
    """The best model by mean IoU over all objects, and its paired margin over a baseline: the one named
    (a short label or a model name), else the runner-up. None when no model has a meaningful IoU."""
    grid = headline_grid(df)
    rows = [r for r in grid["rows"] if np.isfinite(r[2][0][0])]
    if not rows:
        return None
    ranked = sorted(rows, key=lambda r: -r[2][0][0])
    best = ranked[0]
    base, why = (ranked[1], "the runner-up") if len(ranked) > 1 else (None, "")
    if baseline:
        found = [r for r in rows if baseline in (r[0], r[1][0])]
        if not found:
            raise ValueError(f"baseline {baseline!r} is not a model of this run with a meaningful IoU; choose one of "
                             f"{[r[0] for r in rows]}")
        if found[0] is not best:
            base, why = found[0], "named with --baseline"
        else:
            why = "the runner-up (the named baseline is itself the best)"
    out = {"best": best[0], "best_iou": best[2][0][0], "n": best[2][0][1], "grid": grid, "baseline": None}
    if base is not None:
        out.update(baseline=base[0], baseline_iou=base[2][0][0], baseline_why=why,
                   paired=paired_difference(df, best[1], base[1], seed))
    return out
