"""Prompts: the Gaussian of a mask and its tight box, derived in one place for every model and dataset.

Frames (docs/flip.md §0):
  norm   x_n = 2·col/(W−1) − 1, y_n = 2·row/(H−1) − 1
  pixel  continuous (x, y), pixel (col, row) has its value at integer (col, row)

rho = (μx, μy, σx², σy², σxy) in the norm frame: the 5-float form the FLIP HDF5 files store.
How a model turns rho into its own input (FLIP's rot form and model units) belongs to the model: flip/gaussian.py.
Plain NumPy: importing this never loads torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-16


class PromptError(ValueError):
    """A prompt that cannot be built or used (empty mask, NaN, degenerate Gaussian...)."""


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise PromptError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.shape[0] < 1 or mask.shape[1] < 1:
        raise PromptError(f"mask has an empty side: shape {mask.shape}")
    return mask if mask.dtype == bool else mask > 0.5


def rho_from_mask(mask: np.ndarray) -> np.ndarray:
    """Biased moments of a binary mask in the norm frame (docs/flip.md §0). Raises PromptError on an empty mask."""
    m = _check_mask(mask)
    h, w = m.shape
    s = float(m.sum())
    if s == 0:
        raise PromptError("mask is empty: no Gaussian prompt can be derived")
    # separable sums instead of a full meshgrid: O(H·W) adds, no float H×W temporaries
    x = np.linspace(-1.0, 1.0, w) if w > 1 else np.zeros(1)
    y = np.linspace(-1.0, 1.0, h) if h > 1 else np.zeros(1)
    mf = m.astype(np.float64)
    col = mf.sum(0)
    row = mf.sum(1)
    mx, my = col @ x / s, row @ y / s
    vx = col @ (x * x) / s - mx * mx
    vy = row @ (y * y) / s - my * my
    vxy = y @ (mf @ x) / s - mx * my
    return np.array([mx, my, vx, vy, vxy], dtype=np.float64)


def pixel_moments_from_rho(rho: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (2,) and covariance (2, 2) in pixels from the norm-frame rho."""
    sx, sy = (width - 1) / 2.0, (height - 1) / 2.0
    mx, my, vx, vy, vxy = np.asarray(rho, dtype=np.float64)
    mean = np.array([(mx + 1) * sx, (my + 1) * sy])
    cov = np.array([[vx * sx * sx, vxy * sx * sy], [vxy * sx * sy, vy * sy * sy]])
    return mean, cov


def rho_from_pixel_moments(mean: np.ndarray, cov: np.ndarray, width: int, height: int) -> np.ndarray:
    sx, sy = max(width - 1, 1) / 2.0, max(height - 1, 1) / 2.0
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    return np.array([mean[0] / sx - 1, mean[1] / sy - 1, cov[0, 0] / sx**2, cov[1, 1] / sy**2, cov[0, 1] / (sx * sy)])


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box in pixel-edge coordinates (COCO convention: x1 = x_max + 1). Raises on an empty mask."""
    m = _check_mask(mask)
    cols = np.flatnonzero(m.any(0))
    rows = np.flatnonzero(m.any(1))
    if cols.size == 0:
        raise PromptError("mask is empty: no box prompt can be derived")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def xyxy_to_xywh(box: np.ndarray) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def xywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def rho_from_box(box_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """A Gaussian for users who only have a box: the moments of the ellipse inscribed in it.

    A filled ellipse with semi-axes (w/2, h/2) has variances (w/2)²/4 and (h/2)²/4, axis-aligned.
    Centres use pixel-centre coordinates, so a box of one pixel [c, r, c+1, r+1] is centred on (c, r).
    """
    x0, y0, x1, y1 = np.asarray(box_xyxy, dtype=np.float64)
    if not np.all(np.isfinite([x0, y0, x1, y1])) or x1 <= x0 or y1 <= y0:
        raise PromptError(f"box {box_xyxy!r} is not a finite XYXY box with x1 > x0 and y1 > y0")
    mean = np.array([(x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5])
    w, h = x1 - x0, y1 - y0
    cov = np.diag([(w / 2) ** 2 / 4, (h / 2) ** 2 / 4])
    return rho_from_pixel_moments(mean, cov, width, height)


@dataclass(frozen=True)
class Prompt:
    """One object's prompt. `rho` is the authors' stored form; `box_xyxy` is pixel-edge XYXY."""

    rho: np.ndarray
    box_xyxy: np.ndarray
    width: int
    height: int
    area: int = 0  # mask pixels, when built from a mask
    meta: dict = field(default_factory=dict, compare=False)  # image_id / object_id when known (seeds use them)

    def identity(self) -> str:
        """A stable name for per-object seeds: (image id, object id) when known, else the prompt's own numbers."""
        iid, oid = self.meta.get("image_id"), self.meta.get("object_id")
        if iid is not None and oid is not None:
            return f"{iid}/{oid}"
        return "rho:" + ",".join(f"{v:.17g}" for v in np.asarray(self.rho, dtype=np.float64)) + f"@{self.width}x{self.height}"

    @classmethod
    def from_mask(cls, mask: np.ndarray, **meta) -> "Prompt":
        m = _check_mask(mask)
        h, w = m.shape
        return cls(rho_from_mask(m), box_from_mask(m), w, h, int(m.sum()), dict(meta))

    @classmethod
    def from_box(cls, box_xyxy, width: int, height: int, **meta) -> "Prompt":
        box = np.asarray(box_xyxy, dtype=np.float64)
        return cls(rho_from_box(box, width, height), box, int(width), int(height), 0, dict(meta))

    @classmethod
    def from_rho(cls, rho, width: int, height: int, **meta) -> "Prompt":
        """From a stored rho (e.g. an HDF5 `positions` row). The box is the 2σ box of the Gaussian."""
        rho = np.asarray(rho, dtype=np.float64)
        validate_rho(rho)
        mean, cov = pixel_moments_from_rho(rho, width, height)
        half = 2 * np.sqrt(np.diag(cov))
        box = np.array([mean[0] - half[0] + 0.5, mean[1] - half[1] + 0.5, mean[0] + half[0] + 0.5, mean[1] + half[1] + 0.5])
        return cls(rho, box, int(width), int(height), 0, dict(meta))

    @property
    def mean_px(self) -> np.ndarray:
        return pixel_moments_from_rho(self.rho, self.width, self.height)[0]

    @property
    def cov_px(self) -> np.ndarray:
        return pixel_moments_from_rho(self.rho, self.width, self.height)[1]


def validate_rho(rho: np.ndarray, name: str = "Gaussian") -> None:
    """Reject NaN/inf and non-positive-semidefinite or zero-variance Gaussians with a clear message."""
    rho = np.asarray(rho, dtype=np.float64)
    if rho.shape != (5,):
        raise PromptError(f"{name}: expected 5 floats (μx, μy, σx², σy², σxy), got shape {rho.shape}")
    if not np.all(np.isfinite(rho)):
        raise PromptError(f"{name}: contains NaN or inf: {rho.tolist()}")
    _, _, vx, vy, vxy = rho
    if vx < 0 or vy < 0 or vx * vy - vxy * vxy < -1e-12 * max(vx * vy, EPS):
        raise PromptError(f"{name}: covariance is not positive semi-definite: {rho.tolist()}")


EMPTY_MASK = "empty mask"  # ObjectPrompt.reason of an empty mask (the harness counts these apart from failures)


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt from its ground-truth mask, or the reason there is none."""

    object_id: object
    prompt: Prompt | None
    mask: np.ndarray | None
    reason: str | None = None  # "mask: …" (unreadable), "mask shape …", EMPTY_MASK or "prompt: …"


def prompts_from_masks(masks, object_ids, shape, image_id=None) -> list[ObjectPrompt]:
    """The one mask → prompt routine (the benchmark runner, its warm-up, the trainer's validation): for each id,
    in order, a Prompt carrying image_id/object_id (seeds use them), or the reason why none can be made. `masks`
    maps ids to a mask, None, or the Exception raised reading it; `shape` is the image's (H, W)."""
    out = []
    h, w = shape[:2]
    for oid in object_ids:
        m = masks.get(oid)
        if isinstance(m, Exception) or m is None:
            out.append(ObjectPrompt(oid, None, None, f"mask: {m}"))
            continue
        if m.shape != (h, w):
            out.append(ObjectPrompt(oid, None, None, f"mask shape {m.shape} != image {(h, w)}"))
            continue
        if not np.any(m):
            out.append(ObjectPrompt(oid, None, m, EMPTY_MASK))
            continue
        try:
            out.append(ObjectPrompt(oid, Prompt.from_mask(m, object_id=oid, image_id=image_id), m))
        except (PromptError, ValueError) as e:
            out.append(ObjectPrompt(oid, None, m, f"prompt: {e}"))
    return out

