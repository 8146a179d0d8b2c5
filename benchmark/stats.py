"""Bootstrap 95 % intervals for mean IoU and for paired differences between models on the same objects."""
from __future__ import annotations

import itertools
import zlib

import numpy as np

from .models import iou_is_meaningful
from .tables import EMPTY, Table, model_label, model_order, valid_iou

N_BOOT = 2000


def _rng(seed: int, *names) -> np.random.Generator:
    """A generator per (run seed, what is resampled): results do not depend on table order."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(n).encode()) for n in names])


def bootstrap_mean_ci(x: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT, level: float = 0.95):
    """Percentile bootstrap of the mean. Resamples in chunks so memory stays ~chunk·n."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    means = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // x.size))
    for s in range(0, n_boot, chunk):
        e = min(n_boot, s + chunk)
        means[s:e] = x[rng.integers(0, x.size, size=(e - s, x.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def ci_table(df, seed: int = 0) -> Table:
    pairs = model_order(df)
    rows = []
    for m, w in pairs:
        if not iou_is_meaningful(w):
            continue
        for d in dict.fromkeys(df["dataset"]):
            v = valid_iou(df[(df["model"] == m) & (df["weights_id"] == w) & (df["dataset"] == d)])["iou"].to_numpy(float)
            if not len(v):
                continue
            lo, hi = bootstrap_mean_ci(v, _rng(seed, "ci", m, w, d))
            rows.append([model_label(m, w, pairs), d, str(len(v)), f"{100 * v.mean():.2f}", f"[{100 * lo:.2f}, {100 * hi:.2f}]"])
    return Table("ci", f"Mean IoU (%) with bootstrap 95 % intervals ({N_BOOT} resamples)",
                 ["Model", "Dataset", "Objects", "Mean IoU", "95 % CI"], rows)


def paired_table(df, seed: int = 0) -> Table:
    """For every two models and dataset: IoU(A) − IoU(B) on the objects both segmented (status ok)."""
    pairs = [p for p in model_order(df) if iou_is_meaningful(p[1])]
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
            rows.append([model_label(ma, wa, pairs), model_label(mb, wb, pairs), d, str(len(diff)), f"{100 * diff.mean():+.2f}",
                         f"[{100 * lo:+.2f}, {100 * hi:+.2f}]", f"{100 * np.mean(diff > 0):.1f} %"])
    t = Table("paired", "Paired IoU differences A − B on the same objects (percentage points)",
              ["A", "B", "Dataset", "Objects", "Mean A − B", "95 % CI", "A better"], rows)
    if not rows:
        t.notes.append(f"{EMPTY}: fewer than two models with meaningful IoU share objects in this run.")
    return t
