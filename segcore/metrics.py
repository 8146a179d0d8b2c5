"""Per-object metrics: IoU (identical to pycocotools maskUtils.iou), boundary IoU (Cheng et al. 2021), areas.

numpy only at import time (scipy is imported inside boundary_iou), so the trainer can reuse it cheaply.
"""
from __future__ import annotations

import math

import numpy as np

SMALL_MAX = 32 * 32  # COCO size splits in absolute pixels: small < 32², medium < 96², large otherwise
MEDIUM_MAX = 96 * 96
BOUNDARY_DILATION_RATIO = 0.02


def _as_bool(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    return m if m.dtype == bool else m > 0


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|pred ∧ gt| / |pred ∨ gt|, 0 when the union is empty (as pycocotools for non-crowd objects)."""
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth {g.shape}")
    inter = np.count_nonzero(p & g)
    union = np.count_nonzero(p | g)
    return float(inter) / float(union) if union else 0.0


def _bbox(m: np.ndarray):
    rows = np.flatnonzero(m.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def boundary_dilation(height: int, width: int, ratio: float = BOUNDARY_DILATION_RATIO) -> int:
    """Boundary width in pixels: round(ratio · image diagonal), at least 1 (Cheng et al. 2021)."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def inner_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """Mask pixels within chessboard distance d of the background (the outside of the image counts as
    background): mask minus its erosion by a 3×3 square applied d times. Computed on the mask's bounding box."""
    from scipy.ndimage import distance_transform_cdt

    m = _as_bool(mask)
    out = np.zeros_like(m)
    bb = _bbox(m)
    if bb is None:
        return out
    r0, r1, c0, c1 = bb
    crop = np.pad(m[r0:r1, c0:c1], 1)  # zero frame: the image border and the box edge are background
    dist = distance_transform_cdt(crop, metric="chessboard")[1:-1, 1:-1]
    out[r0:r1, c0:c1] = m[r0:r1, c0:c1] & (dist <= d)
    return out


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = BOUNDARY_DILATION_RATIO) -> float:
    """IoU of the two masks' inner boundary bands of width round(0.02 · diagonal); 0 if both are empty."""
    p, g = _as_bool(pred), _as_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth {g.shape}")
    d = boundary_dilation(*g.shape, ratio=dilation_ratio)
    pb, gb = inner_boundary(p, d), inner_boundary(g, d)
    union = np.count_nonzero(pb | gb)
    return float(np.count_nonzero(pb & gb)) / float(union) if union else 0.0


def size_class(area_px: float) -> str:
    if area_px < SMALL_MAX:
        return "small"
    if area_px < MEDIUM_MAX:
        return "medium"
    return "large"


def object_metrics(pred: np.ndarray, gt: np.ndarray, boundary: bool = True) -> dict:
    """All per-object numbers the record needs."""
    g = _as_bool(gt)
    h, w = g.shape
    area = int(np.count_nonzero(g))
    p = _as_bool(pred)
    return {
        "iou": mask_iou(p, g),
        "boundary_iou": boundary_iou(p, g) if boundary else float("nan"),
        "area_px": area,
        "area_ratio": area / float(h * w),
        "pred_area_px": int(np.count_nonzero(p)),
    }
