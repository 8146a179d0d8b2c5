"""Heat maps (paper Fig. 7 style) and trade-off plots, with matplotlib (Agg). Bins are fixed log-spaced edges,
so the same records always give the same grid (tested)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# fixed bin edges: log10 of relative area, log2 of image resolution sqrt(W·H), log10 of absolute area (px)
REL_AREA_EDGES = 10.0 ** np.arange(-6.0, 0.0001, 0.5)
RESOLUTION_EDGES = 2.0 ** np.arange(6.0, 13.0001, 0.5)
ABS_AREA_EDGES = 10.0 ** np.arange(0.0, 8.0001, 0.5)


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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_base: Path) -> list[Path]:
    out = []
    for ext in ("png", "svg"):
        p = out_base.with_suffix(f".{ext}")
        tmp = p.with_name(f".{p.stem}.tmp.{ext}")
        fig.savefig(tmp, dpi=100, format=ext, metadata={"Date": None} if ext == "svg" else None)
        tmp.replace(p)
        out.append(p)
    return out


def _edge_label(v: float) -> str:
    e = np.log10(v)
    return f"1e{int(e)}" if abs(e - round(e)) < 1e-9 else f"{v:.3g}"


def plot_heatmap(mean, count, xedges, yedges, xlabel, ylabel, title, out_base: Path) -> list[Path]:
    """Drawn on bin-index axes with edge labels (log-scale axes make matplotlib ~10× slower here)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    im = ax.imshow(np.ma.masked_invalid(100 * mean), origin="lower", vmin=0, vmax=100, cmap="viridis", aspect="auto",
                   extent=(0, len(xedges) - 1, 0, len(yedges) - 1), interpolation="nearest")
    for i, j in zip(*np.nonzero(count)):
        ax.text(j + 0.5, i + 0.5, str(count[i, j]), ha="center", va="center", fontsize=6, color="white")
    xt, yt = np.arange(0, len(xedges), 2), np.arange(0, len(yedges), 2)
    ax.set_xticks(xt, [_edge_label(xedges[k]) for k in xt], fontsize=8)
    decades = np.isclose(yedges[1] / yedges[0], 10**0.5)  # log10 bins get 1eN labels, powers of two plain numbers
    ax.set_yticks(yt, [_edge_label(yedges[k]) if decades else f"{yedges[k]:.0f}" for k in yt], fontsize=8)
    fig.colorbar(im, ax=ax, label="mean IoU (%)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + "  (numbers: objects per bin)", fontsize=9)
    paths = _save(fig, out_base)
    plt.close(fig)
    return paths


def model_heatmaps(valid_df, label: str, out_dir: Path, slug: str) -> dict[str, list[Path]]:
    """Two maps for one model over all datasets: IoU over relative area × image resolution, and relative ×
    absolute area (Fig. 7)."""
    rel = valid_df["area_ratio"].to_numpy(float)
    res = np.sqrt(valid_df["width"].to_numpy(float) * valid_df["height"].to_numpy(float))
    absa = valid_df["area_px"].to_numpy(float)
    iou = valid_df["iou"].to_numpy(float)
    out = {}
    m, c = heatmap_bins(rel, res, iou, REL_AREA_EDGES, RESOLUTION_EDGES)
    out["resolution"] = plot_heatmap(m, c, REL_AREA_EDGES, RESOLUTION_EDGES, "relative mask area (fraction of image)",
                                     "image resolution √(W·H) (px)", f"{label}: IoU over relative area and resolution",
                                     out_dir / f"heatmap_resolution_{slug}")
    m, c = heatmap_bins(rel, absa, iou, REL_AREA_EDGES, ABS_AREA_EDGES)
    out["absolute"] = plot_heatmap(m, c, REL_AREA_EDGES, ABS_AREA_EDGES, "relative mask area (fraction of image)",
                                   "absolute mask area (px)", f"{label}: IoU over relative and absolute mask area",
                                   out_dir / f"heatmap_area_{slug}")
    return out


def tradeoff_plot(points: list[dict], xkey: str, xlabel: str, out_base: Path) -> list[Path]:
    """points: [{label, iou, params, time_ms}] with meaningful IoU only."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    fig.subplots_adjust(left=0.12, right=0.95, bottom=0.14, top=0.95)
    for p in points:
        if p.get(xkey) and np.isfinite(p[xkey]) and p[xkey] > 0 and np.isfinite(p["iou"]):
            ax.scatter(p[xkey], 100 * p["iou"], s=30)
            ax.annotate(p["label"], (p[xkey], 100 * p["iou"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Average IoU (%)")
    ax.grid(True, alpha=0.3)
    paths = _save(fig, out_base)
    plt.close(fig)
    return paths
