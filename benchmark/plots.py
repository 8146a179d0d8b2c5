"""Heat maps (paper Fig. 7 style), A − B difference maps and trade-off plots, with matplotlib (Agg).

Bins are fixed log-spaced edges, so the same records always give the same grid (tested); each map shows only
the rows and columns that hold objects. Figures are saved with a tight bounding box as PNG at 2× (200 dpi,
embedded in the HTML report at half size) and SVG. Count labels are black or white, whichever contrasts more
with the cell under them.
"""
from __future__ import annotations

from pathlib import Path
from segcore.atomic import atomic_path

from segcore.atomic import atomic_path

import numpy as np

# fixed bin edges: log10 of relative area, log2 of image resolution sqrt(W·H), log10 of absolute area (px)
REL_AREA_EDGES = 10.0 ** np.arange(-6.0, 0.0001, 0.5)
RESOLUTION_EDGES = 2.0 ** np.arange(6.0, 13.0001, 0.5)
ABS_AREA_EDGES = 10.0 ** np.arange(0.0, 8.0001, 0.5)
DPI = 200  # 2× of the 100 dpi the figures are laid out for
COUNT_FONTSIZE = 10  # "n=…" under the mean; sizes chosen so a 390 px phone shows the mean at ≥ 9 CSS px
MEAN_FONTSIZE = 13


def heatmap_bins(x: np.ndarray, y: np.ndarray, v: np.ndarray, xedges: np.ndarray, yedges: np.ndarray):
    """Mean of v and count in each (y, x) bin; values outside the edges are clipped into the end bins."""
    x, y, v = (np.asarray(a, dtype=np.float64) for a in (x, y, v))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(v)
    x, y, v = x[keep], y[keep], v[keep]
    xi = np.clip(np.searchsorted(xedges, x, side="right") - 1, 0, len(xedges) - 2)
    yi = np.clip(np.searchsorted(yedges, y, side="right") - 1, 0, len(yedges) - 2)
    shape = (len(yedges) - 1, len(xedges) - 1)
    count = np.zeros(shape, dtype=np.int64)
    total = np.zeros(shape, dtype=np.float64)
    np.add.at(count, (yi, xi), 1)
    np.add.at(total, (yi, xi), v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def occupied_range(count: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """((first row, last row + 1), (first column, last column + 1)) of the bins holding objects; the whole grid
    when it is empty."""
    rows, cols = np.nonzero(count)
    if not len(rows):
        return (0, count.shape[0]), (0, count.shape[1])
    return (int(rows.min()), int(rows.max()) + 1), (int(cols.min()), int(cols.max()) + 1)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_base: Path) -> list[Path]:
    out = []
    for ext in ("png", "svg"):
        p = out_base.parent / f"{out_base.name}.{ext}"  # not with_suffix: labels such as flip-tiny.authors hold dots
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=DPI, format=ext, bbox_inches="tight", pad_inches=0.06,
                        metadata={"Date": None} if ext == "svg" else {"Software": None})
        out.append(p)
    return out


def _luminance(rgb) -> float:
    """WCAG relative luminance of an sRGB colour in [0, 1]."""
    c = np.asarray(rgb[:3], dtype=float)
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def contrast_ratio(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_color_for(background) -> str:
    """Black or white, whichever contrasts more with the background colour."""
    return "black" if contrast_ratio(background, (0, 0, 0)) >= contrast_ratio(background, (1, 1, 1)) else "white"


def _edge_label(v: float) -> str:
    e = np.log10(v)
    return f"1e{int(e)}" if abs(e - round(e)) < 1e-9 else f"{v:.3g}"


def _ticks(lo: int, hi: int, edges, decades: bool):
    """Tick positions (bin edges) in [lo, hi] and their labels; every edge when few, else every other."""
    step = 1 if hi - lo <= 6 else 2
    start = lo if not decades else lo + (lo % 2 if step == 2 else 0)  # keep whole decades labelled
    ks = list(range(start, hi + 1, step))
    labels = [_edge_label(edges[k]) if decades else f"{edges[k]:.0f}" for k in ks]
    return ks, labels


def heatmap_figure(mean, count, xedges, yedges, xlabel, ylabel, title, diverging: bool = False, value_label="mean IoU (%)"):
    """(fig, ax, image) of a binned map on bin-index axes, cropped to the occupied bins. mean in [0, 1] IoU,
    or an IoU difference in [−1, 1] when diverging."""
    plt = _plt()
    (r0, r1), (c0, c1) = occupied_range(count)
    ncols, nrows = c1 - c0, r1 - r0
    fig, ax = plt.subplots(figsize=(min(7.0, 2.4 + 0.62 * max(ncols, 3)), min(6.0, 1.6 + 0.5 * max(nrows, 3))))
    values = 100 * np.asarray(mean, dtype=float)
    if diverging:
        finite = np.abs(values[np.isfinite(values)])
        lim = max(5.0, float(np.ceil(finite.max() / 5) * 5)) if finite.size else 5.0
        cmap, vmin, vmax = plt.get_cmap("RdBu"), -lim, lim
    else:
        cmap, vmin, vmax = plt.get_cmap("viridis"), 0.0, 100.0
    im = ax.imshow(np.ma.masked_invalid(values), origin="lower", vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto",
                   extent=(0, len(xedges) - 1, 0, len(yedges) - 1), interpolation="nearest")
    ax.set_facecolor("#f4f4f4")  # empty bins inside the occupied range
    for i, j in zip(*np.nonzero(count)):  # each cell: its mean (read without the colour bar) and its objects
        bg = cmap(im.norm(values[i, j]))
        txt = f"{values[i, j]:+.0f}" if diverging else f"{values[i, j]:.0f}"
        ax.text(j + 0.5, i + 0.56, txt, ha="center", va="bottom", fontsize=MEAN_FONTSIZE, fontweight="bold",
                color=text_color_for(bg))
        ax.text(j + 0.5, i + 0.5, f"n={count[i, j]}", ha="center", va="top", fontsize=COUNT_FONTSIZE,
                color=text_color_for(bg))
    ax.set_xlim(c0, c1)
    ax.set_ylim(r0, r1)
    decades_y = np.isclose(yedges[1] / yedges[0], 10**0.5)  # log10 bins get 1eN labels, powers of two plain numbers
    xt, xl = _ticks(c0, c1, xedges, True)
    yt, yl = _ticks(r0, r1, yedges, decades_y)
    ax.set_xticks(xt, xl, fontsize=8)
    ax.set_yticks(yt, yl, fontsize=8)
    fig.colorbar(im, ax=ax, label=value_label, fraction=0.05, pad=0.03)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    return fig, ax, im


def plot_heatmap(mean, count, xedges, yedges, xlabel, ylabel, title, out_base: Path, **kw) -> list[Path]:
    """Drawn on bin-index axes with edge labels (log-scale axes make matplotlib ~10× slower here)."""
    plt = _plt()
    fig, _, _ = heatmap_figure(mean, count, xedges, yedges, xlabel, ylabel, title, **kw)
    paths = _save(fig, out_base)
    plt.close(fig)
    return paths


REL_LABEL = "relative mask area (fraction of image)"
RES_LABEL = "image resolution √(W·H) (px)"
ABS_LABEL = "absolute mask area (px)"


def model_heatmaps(valid_df, label: str, out_dir: Path, slug: str) -> dict[str, list[Path]]:
    """Two maps for one model over all datasets: IoU over relative area × image resolution, and relative ×
    absolute area (Fig. 7). In each cell: the mean IoU (%) and the number of objects."""
    rel = valid_df["area_ratio"].to_numpy(float)
    res = np.sqrt(valid_df["width"].to_numpy(float) * valid_df["height"].to_numpy(float))
    absa = valid_df["area_px"].to_numpy(float)
    iou = valid_df["iou"].to_numpy(float)
    out = {}
    m, c = heatmap_bins(rel, res, iou, REL_AREA_EDGES, RESOLUTION_EDGES)
    out["resolution"] = plot_heatmap(m, c, REL_AREA_EDGES, RESOLUTION_EDGES, REL_LABEL, RES_LABEL, label,
                                     out_dir / f"heatmap_resolution_{slug}")
    m, c = heatmap_bins(rel, absa, iou, REL_AREA_EDGES, ABS_AREA_EDGES)
    out["absolute"] = plot_heatmap(m, c, REL_AREA_EDGES, ABS_AREA_EDGES, REL_LABEL, ABS_LABEL, label,
                                   out_dir / f"heatmap_area_{slug}")
    return out


def difference_heatmap(joined, label_a: str, label_b: str, out_base: Path) -> list[Path]:
    """Mean IoU(A) − IoU(B) per bin (relative area × resolution) on the objects both segmented. joined has
    area_ratio, width, height, iou_a, iou_b."""
    rel = joined["area_ratio"].to_numpy(float)
    res = np.sqrt(joined["width"].to_numpy(float) * joined["height"].to_numpy(float))
    diff = joined["iou_a"].to_numpy(float) - joined["iou_b"].to_numpy(float)
    m, c = heatmap_bins(rel, res, diff, REL_AREA_EDGES, RESOLUTION_EDGES)
    return plot_heatmap(m, c, REL_AREA_EDGES, RESOLUTION_EDGES, REL_LABEL, RES_LABEL, f"{label_a} − {label_b}", out_base,
                        diverging=True, value_label="mean IoU difference (points)")


MARKERS = "osD^v<>Pp*hX"


def _human(v: float, unit: str) -> str:
    if unit == "params":
        for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if v >= div:
                return f"{v / div:.3g}{suf}"
    return f"{v:g}"


def tradeoff_plot(points: list[dict], xkey: str, xlabel: str, out_base: Path, xerr_key: str | None = None) -> list[Path]:
    """Average IoU against a cost on a log axis, one marker per model with a legend (short labels).
    points: [{label, iou, iou_ci: (lo, hi), params, time_ms, time_iqr: (q25, q75)}], IoU in [0, 1].
    A cost of 0 (e.g. the oracle box's parameters) is drawn at a marked '0' position left of the log range;
    points without a cost are named in a note under the plot, never dropped silently."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    xs = [p.get(xkey) for p in points]
    positive = [x for x in xs if x is not None and np.isfinite(x) and x > 0]
    lo_pos = min(positive) if positive else 1.0
    zero_x = lo_pos / 10.0
    colors = plt.get_cmap("tab10").colors
    missing, has_zero = [], False
    # models with the same cost (e.g. one architecture with two weight files) are spread a little sideways
    same: dict[float, list[int]] = {}
    for i, x in enumerate(xs):
        if x is not None and np.isfinite(x):
            same.setdefault(float(x), []).append(i)
    dodge = {i: 10 ** (0.02 * (k - (len(g) - 1) / 2)) for g in same.values() for k, i in enumerate(g)}
    for i, p in enumerate(points):
        x, y = p.get(xkey), p.get("iou")
        if x is None or not np.isfinite(x) or y is None or not np.isfinite(y):
            missing.append(p["label"])
            continue
        is_zero = x <= 0
        has_zero |= is_zero
        px = (zero_x if is_zero else x) * dodge.get(i, 1.0)
        yerr = None
        if p.get("iou_ci") and all(np.isfinite(p["iou_ci"])):
            yerr = [[100 * (y - p["iou_ci"][0])], [100 * (p["iou_ci"][1] - y)]]
        xerr = None
        if xerr_key and not is_zero and p.get(xerr_key) and all(np.isfinite(p[xerr_key])):
            q0, q1 = p[xerr_key]
            xerr = [[max(x - q0, 0.0)], [max(q1 - x, 0.0)]]
        ax.errorbar([px], [100 * y], yerr=yerr, xerr=xerr, fmt=MARKERS[i % len(MARKERS)], color=colors[i % len(colors)],
                    ms=7, capsize=3, lw=1, label=p["label"] + (" (0)" if is_zero else ""))
    ax.set_xscale("log")
    if has_zero:
        left = zero_x / 2.5
        ax.set_xlim(left=left)
        lo, hi = ax.get_xlim()
        ticks = [t for t in 10.0 ** np.arange(np.floor(np.log10(lo_pos)), np.ceil(np.log10(hi)) + 1) if lo_pos / 1.5 <= t <= hi]
        if len(ticks) < 2:  # less than a decade of positive values: label the values themselves
            ticks = sorted(set(ticks) | set(positive))
        ax.set_xticks([zero_x] + ticks, ["0"] + [_human(t, xkey) for t in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.axvline(np.sqrt(zero_x * lo_pos), color="0.6", lw=0.8, ls=(0, (3, 3)))  # axis break: 0 is not on the log scale
    elif xkey == "params":
        lo, hi = ax.get_xlim()
        ticks = [t for t in 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1) if lo <= t <= hi]
        if len(ticks) < 2:
            ticks = sorted(set(ticks) | set(positive))
        if ticks:
            ax.set_xticks(ticks, [_human(t, xkey) for t in ticks])
            ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("Average IoU (%)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)
    if any(x is not None and np.isfinite(x) for x in xs):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if missing:
        fig.text(0.01, -0.02, "not shown (no value): " + ", ".join(missing), fontsize=8, ha="left", va="top")
    paths = _save(fig, out_base)
    plt.close(fig)
    return paths


def break_even(encoder_ms: float, decoder_ms: float, flip_ms: float) -> float:
    """Objects per image at which encoder + n·decoder = n·FLIP: encoder / (FLIP − decoder); inf when the
    baseline's decoder alone costs at least FLIP's time per object (FLIP is then cheaper at every count)."""
    return encoder_ms / (flip_ms - decoder_ms) if flip_ms > decoder_ms else float("inf")


def breakeven_plot(rows: list[dict], flips: dict[str, float], out_base: Path, max_objects: int = 100,
                   title: str = "") -> list[Path]:
    """Time per image against objects per image, log-log: one line per baseline (encoder + n·decoder) and one per
    FLIP mode (n·time per object; dashed, black / grey). A dot marks where a baseline crosses the first FLIP line
    (its break-even count, also in its legend label). rows: [{label, encoder_ms, decoder_ms}]; flips: {label: ms
    per object}, up to four (dashed, then dotted)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.4, 4.6))
    n = np.geomspace(1, max_objects, 200)
    cmap = plt.get_cmap("tab20")
    ref = next(iter(flips.values()), None)
    for i, r in enumerate(sorted(rows, key=lambda r: r["encoder_ms"])):
        c = cmap(i % 20)
        label = r["label"]
        if ref is not None:
            k = break_even(r["encoder_ms"], r["decoder_ms"], ref)
            label += f"  (n* = {k:.0f})" if np.isfinite(k) else "  (n* = never)"
            if np.isfinite(k) and 1 <= k <= max_objects:
                ax.plot([k], [k * ref / 1e3], "o", color=c, ms=4, zorder=3)
        ax.plot(n, (r["encoder_ms"] + n * r["decoder_ms"]) / 1e3, color=c, lw=1.2,
                ls="-" if i < 10 else (0, (4, 1.5)), label=label)
    for (label, ms), (c, ls) in zip(flips.items(), (("black", "--"), ("0.45", "--"), ("black", ":"), ("0.45", ":"))):
        ax.plot(n, n * ms / 1e3, color=c, lw=2.2, ls=ls, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, max_objects)
    ax.set_xticks([1, 2, 5, 10, 20, 50, 100], ["1", "2", "5", "10", "20", "50", "100"])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("objects per image", fontsize=9)
    ax.set_ylabel("time per image (s)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="both", alpha=0.25)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title=f"n* = break-even vs {next(iter(flips), 'FLIP')}" if flips else None, title_fontsize=7)
    paths = _save(fig, out_base)
    plt.close(fig)
    return paths
