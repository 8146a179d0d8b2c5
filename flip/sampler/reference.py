"""Plain NumPy implementation of the fovea sampler (docs/flip.md §3, §6.2, §6.4) with compat="exact": the readable twin of
ext/fovea_core.c. (compat="authors" has its own twin, flip/sampler/authors.py.)

Same algorithms and the same validation as the C extension; the random streams differ (numpy's PCG64 here,
xoshiro256++ in C), so C and NumPy agree exactly on deterministic parts (allocation, placement and extraction
given the same candidate centres, distance maps) and in distribution on random draws. The tests check both.
Slow (a Python loop over candidate centres): use it to check the C code, not to train.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import SamplerError

FAR_SIGMAS = 5.0  # a Gaussian whose mean lies more than 5 widened σ outside the image is an error
MAX_TOKENS = 1_000_000
MAX_PATCH = 1024
MAX_SIZES = 16
NUM_GROUPS = 7
GROUP_THRESHOLDS = (2, 4, 8, 16, 32, 64)  # group 6 = every pixel of the crop
OVERLAP_EPS = 1e-6
AUGMENT_LIMIT = 1e6  # |rot6| bound of augment_position (as FV_AUGMENT_LIMIT in C)


# ----------------------------------------------------------------------------- validation
def check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise SamplerError("image must be a numpy uint8 array of shape (H, W, 3)")
    if image.dtype != np.uint8:
        raise SamplerError(f"image must have dtype uint8 (RGB, HWC), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise SamplerError(f"image must have shape (H, W, 3) (RGB); expand grayscale images to 3 channels first, got {image.shape}")
    if not image.flags.c_contiguous:
        raise SamplerError("image must be C-contiguous (use numpy.ascontiguousarray)")
    if image.shape[0] < 3 or image.shape[1] < 3:
        raise SamplerError(f"image is {image.shape[1]}x{image.shape[0]}; the sampler needs at least 3x3 pixels")
    return image


def check_sizes(sizes) -> tuple[int, ...]:
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise SamplerError("patch_sizes must be a sequence of ints") from None
    if not 1 <= len(sizes) <= MAX_SIZES:
        raise SamplerError(f"patch_sizes must have 1..{MAX_SIZES} entries, got {len(sizes)}")
    out = []
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, float, np.integer, np.floating)) or s != int(s):
            raise SamplerError(f"patch size {s!r} is not an integer")
        s = int(s)
        if not 1 <= s <= MAX_PATCH:
            raise SamplerError(f"patch size {s} out of range [1, {MAX_PATCH}]")
        if s in out:
            raise SamplerError(f"patch size {s} given twice")
        out.append(s)
    return tuple(out)


def _floats(g, n: int, what: str) -> np.ndarray:
    try:
        a = np.asarray(g, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise SamplerError(f"{what} must be a sequence of {n} numbers") from None
    if a.shape != (n,):
        raise SamplerError(f"{what} must have {n} numbers, got {a.size}")
    return a


def sampling_gaussian(g6, width: int = 0, height: int = 0) -> tuple[float, ...]:
    """g6 (pixels, authors' rot convention, no widening) → (μx, μy, s1w, s2w, a, b) used for placement (docs/flip.md §3.1)."""
    g = _floats(g6, 6, "gaussian")
    if not np.all(np.isfinite(g)):
        raise SamplerError(f"Gaussian contains NaN or inf: {g.tolist()}")
    if not (g[2] > 0 and g[3] > 0):
        raise SamplerError(f"Gaussian stds must be > 0, got s1={g[2]} s2={g[3]}")
    if g[2] > 1e9 or g[3] > 1e9:
        raise SamplerError(f"Gaussian stds too large (> 1e9 px): s1={g[2]} s2={g[3]}")
    a, b = -g[4], g[5]  # docs/flip.md §0: the sampler flips a
    n = math.sqrt(a * a + b * b)
    if not n > 1e-16:
        raise SamplerError("Gaussian direction (a, b) is zero")
    mx, my, s1, s2 = g[0], g[1], g[2] * math.sqrt(2.0), g[3] * math.sqrt(2.0)
    if width > 0 and height > 0:
        far = FAR_SIGMAS * max(s1, s2)
        if mx < -far or mx > width - 1 + far or my < -far or my > height - 1 + far:
            raise SamplerError(f"Gaussian mean ({mx}, {my}) lies more than {FAR_SIGMAS} widened stds outside the {width}x{height} image")
    return mx, my, s1, s2, a / n, b / n


def check_tokens(num_tokens) -> int:
    if not isinstance(num_tokens, (int, np.integer)) or isinstance(num_tokens, bool):
        raise SamplerError(f"num_tokens must be an int, got {num_tokens!r}")
    if not 0 <= num_tokens <= MAX_TOKENS:
        raise SamplerError(f"num_tokens must be in [0, {MAX_TOKENS}], got {num_tokens}")
    return int(num_tokens)


# ----------------------------------------------------------------------------- allocation (§3.2)
def allocate(s1w: float, s2w: float, num_tokens: int, sizes, coverage: float, width: int = 0, height: int = 0) -> tuple[int, ...]:
    """Counts per size (input order), coarsest first; sizes that cannot fit the image take no budget."""
    sizes = check_sizes(sizes)
    if not (math.isfinite(s1w) and math.isfinite(s2w) and s1w > 0 and s2w > 0):
        raise SamplerError(f"allocation needs finite stds > 0, got {s1w}, {s2w}")
    if not (math.isfinite(coverage) and coverage > 0):
        raise SamplerError(f"coverage must be finite and > 0, got {coverage}")
    num_tokens = check_tokens(num_tokens)
    area = 2.0 * math.pi * s1w * s2w * coverage
    counts = [0] * len(sizes)
    remaining = num_tokens
    for i in sorted(range(len(sizes)), key=lambda j: -sizes[j]):
        p = sizes[i]
        if width > 0 and height > 0 and (p >= width - 1 or p >= height - 1):
            continue
        n = min(remaining, math.floor(area / (p * p)))
        counts[i] = max(0, n)
        remaining -= counts[i]
    return tuple(counts)


# ----------------------------------------------------------------------------- placement (§3.3, §3.5)
def extract_patches(image: np.ndarray, centres: np.ndarray, p: int) -> np.ndarray:
    """Bilinear patches (n, p, p, 3) uint8 at continuous centres; pixel (xi, yi) at (cx − p/2 + 0.5 + xi, …)."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    if len(centres) == 0:
        return np.zeros((0, p, p, 3), np.uint8)
    sx = centres[:, 0] - 0.5 * p + 0.5
    sy = centres[:, 1] - 0.5 * p + 0.5
    x0 = sx.astype(np.int64)  # sx ≥ 0.5: truncation = floor
    y0 = sy.astype(np.int64)
    dx = (sx - x0).astype(np.float32)[:, None, None, None]
    dy = (sy - y0).astype(np.float32)[:, None, None, None]
    off = np.arange(p)
    xs = x0[:, None] + off  # (n, p)
    ys = y0[:, None] + off
    img = image.astype(np.float32)
    a = img[ys[:, :, None], xs[:, None, :]]  # (n, p, p, 3)
    b = img[ys[:, :, None], xs[:, None, :] + 1]
    c = img[ys[:, :, None] + 1, xs[:, None, :]]
    d = img[ys[:, :, None] + 1, xs[:, None, :] + 1]
    v = (1 - dx) * (1 - dy) * a + dx * (1 - dy) * b + (1 - dx) * dy * c + dx * dy * d
    return np.floor(v + 0.5).astype(np.uint8)


def place(image: np.ndarray, sizes, counts, tau: float, candidates):
    """Accept candidate centres finest size first (at most 10·n_i per size), reject boxes leaving the image (1-px
    margin) or whose summed intersection area with all accepted boxes exceeds τ·p².

    candidates: per size, an (m, 2) array of pixel centres, or a callable level → (m, 2) array.
    Returns (got, patches, coords, centres), lists in input order.
    """
    image = check_image(image)
    sizes = check_sizes(sizes)
    if not (math.isfinite(tau) and tau >= 0):
        raise SamplerError(f"tau must be finite and >= 0, got {tau}")
    h, w = image.shape[:2]
    total = int(sum(counts))
    boxes = np.zeros((max(total, 1), 4))
    nbox = 0
    got = [0] * len(sizes)
    accepted: list[np.ndarray] = [np.zeros((0, 2))] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda j: sizes[j]):
        p, n = sizes[i], int(counts[i])
        if n == 0:
            continue
        cand = candidates(i) if callable(candidates) else candidates[i]
        cand = np.asarray(cand, dtype=np.float64).reshape(-1, 2)[: 10 * n]
        half, thr = 0.5 * p, tau * float(p) * p
        keep = []
        for cx, cy in cand:
            x0, x1, y0, y1 = cx - half, cx + half, cy - half, cy + half
            if not (x0 >= 0 and x1 < w - 1 and y0 >= 0 and y1 < h - 1):
                continue
            if nbox:
                bx = boxes[:nbox]
                ix = np.minimum(x1, bx[:, 2]) - np.maximum(x0, bx[:, 0])
                iy = np.minimum(y1, bx[:, 3]) - np.maximum(y0, bx[:, 1])
                hit = (ix > OVERLAP_EPS) & (iy > OVERLAP_EPS)
                if np.sum(ix[hit] * iy[hit]) > thr:
                    continue
            boxes[nbox] = (x0, y0, x1, y1)
            nbox += 1
            keep.append((cx, cy))
            if len(keep) == n:
                break
        got[i] = len(keep)
        accepted[i] = np.array(keep, dtype=np.float64).reshape(-1, 2)
    patches = [extract_patches(image, accepted[i], p) for i, p in enumerate(sizes)]
    coords = [model_units(accepted[i], w, h) for i in range(len(sizes))]
    return got, patches, coords, accepted


def model_units(xy_px: np.ndarray, width: int, height: int) -> np.ndarray:
    xy = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    return np.stack([xy[:, 0] / 128.0 - width / 256.0, xy[:, 1] / 128.0 - height / 256.0], axis=1).astype(np.float32)


def draw_gaussian(g: tuple[float, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """n candidate centres from the sampling Gaussian g = sampling_gaussian(...)."""
    mx, my, s1, s2, a, b = g
    z = rng.standard_normal((n, 2))
    u, v = z[:, 0] * s1, z[:, 1] * s2
    return np.stack([a * u - b * v + mx, b * u + a * v + my], axis=1)


def sample_patches(image, g6, num_tokens, sizes, tau, coverage, seed):
    """Whole pipeline; tau or coverage < 0 are drawn as in training. Returns (counts, patches, coords, tau, coverage)."""
    image = check_image(image)
    h, w = image.shape[:2]
    g = sampling_gaussian(g6, w, h)
    sizes = check_sizes(sizes)
    num_tokens = check_tokens(num_tokens)
    if not (math.isfinite(tau) and math.isfinite(coverage)) or coverage == 0:
        raise SamplerError(f"tau and coverage must be finite (coverage > 0), got {tau}, {coverage}")
    rng = np.random.default_rng(seed)
    tau = rng.random() * 4.0 if tau < 0 else float(tau)
    coverage = 0.1 + rng.random() * 1.9 if coverage < 0 else float(coverage)
    counts = allocate(g[2], g[3], num_tokens, sizes, coverage, w, h)
    got, patches, coords, _ = place(image, sizes, counts, tau, lambda i: draw_gaussian(g, 10 * counts[i], rng))
    return tuple(got), patches, coords, tau, coverage


# ----------------------------------------------------------------------------- token count (§3.4)
def num_tokens(rng: np.random.Generator, min_tokens: int = 32, max_tokens: int = 2048, mean_tokens: float = 512) -> int:
    if not (0 <= min_tokens < max_tokens <= MAX_TOKENS):
        raise SamplerError(f"need 0 <= min_tokens < max_tokens <= {MAX_TOKENS}, got {min_tokens}, {max_tokens}")
    if not (min_tokens < mean_tokens < max_tokens):
        raise SamplerError(f"need min_tokens < mean_tokens < max_tokens, got {mean_tokens}")
    m = (mean_tokens - min_tokens) / (max_tokens - min_tokens)
    x, y = rng.gamma(2.0), rng.gamma((1.0 / m - 1.0) * 2.0)  # numpy's gamma is Marsaglia–Tsang too
    n = min_tokens + round(x / (x + y) * (max_tokens - min_tokens))
    return int(min(max(n, min_tokens), max_tokens))


# ----------------------------------------------------------------------------- augmentation (§6.2)
def augment(rng: np.random.Generator, rot6) -> np.ndarray:
    p = _floats(rot6, 6, "position")
    if not np.all(np.isfinite(p)):
        raise SamplerError("position contains NaN or inf")
    mx, my, s1, s2, a, b = p
    if not (s1 > 0 and s2 > 0):
        raise SamplerError(f"position stds must be > 0, got s1={s1} s2={s2}")
    for i, x in enumerate(p):  # bounded inputs keep every intermediate finite
        if abs(x) > AUGMENT_LIMIT:
            raise SamplerError(f"position value {i} = {x} out of range: |values| must be <= {AUGMENT_LIMIT:g}")
    if not a * a + b * b > 1e-24:
        raise SamplerError("position direction (a, b) is zero")
    u, v = rng.standard_normal() * 0.1 * s1, rng.standard_normal() * 0.1 * s2
    mx, my = mx + a * u - b * v, my + b * u + a * v
    f = min((2.0 / 36.0) * min(s1, s2) / max(s1, s2, 1e-8), 2.0 / 36.0)
    th = (2.0 * rng.random() - 1.0) * 2.0 * math.pi * f
    a, b = a * math.cos(th) - b * math.sin(th), a * math.sin(th) + b * math.cos(th)
    e1 = float(np.clip(rng.standard_normal() * 0.1 * s1, -0.3 * s1, 0.3 * s1))
    e2 = float(np.clip(rng.standard_normal() * 0.1 * s2, -0.3 * s2, 0.3 * s2))
    s1, s2 = s1 + e1, s2 + e2
    al, siso = 1.0 - math.exp(-abs(f)), math.sqrt(s1 * s1 + s2 * s2)
    s1, s2 = (1 - al) * s1 + al * siso, (1 - al) * s2 + al * siso
    return np.array([mx, my, s1, s2, a, b])


# ----------------------------------------------------------------------------- mask pixels (§6.4)
def _l1_pass(d: np.ndarray, axis: int) -> np.ndarray:
    """Exact 1-D L1 distance transform along an axis: min_k d[k] + |i − k|, via cumulative minima."""
    d = np.moveaxis(d, axis, -1)
    idx = np.arange(d.shape[-1], dtype=np.int64)
    fwd = np.minimum.accumulate(d - idx, axis=-1) + idx
    bwd = (np.minimum.accumulate((d + idx)[..., ::-1], axis=-1))[..., ::-1] - idx
    return np.moveaxis(np.minimum(fwd, bwd), -1, axis)


def boundary_distance(crop: np.ndarray) -> np.ndarray:
    """L1 distance to the nearest pixel having a 4-neighbour of the other value; -1 where there is none."""
    m = np.asarray(crop) != 0
    bnd = np.zeros_like(m)
    bnd[:, 1:] |= m[:, 1:] != m[:, :-1]
    bnd[:, :-1] |= m[:, :-1] != m[:, 1:]
    bnd[1:, :] |= m[1:, :] != m[:-1, :]
    bnd[:-1, :] |= m[:-1, :] != m[1:, :]
    if not bnd.any():
        return np.full(m.shape, -1, np.int32)
    big = np.int64(m.size + 10)
    d = np.where(bnd, 0, big).astype(np.int64)
    d = _l1_pass(_l1_pass(d, 1), 0)  # L1 is separable
    return d.astype(np.int32)


def crop_box(g6, width: int, height: int) -> tuple[int, int, int, int]:
    """5σ box (σ = max std, no widening) ∩ mask, or the full mask when it covers > 90 % of both sides."""
    g = _floats(g6, 6, "gaussian")
    if not np.all(np.isfinite(g)):
        raise SamplerError("Gaussian contains NaN or inf")
    if not (g[2] > 0 and g[3] > 0):
        raise SamplerError(f"Gaussian stds must be > 0, got s1={g[2]} s2={g[3]}")
    s = max(g[2], g[3])
    x0, x1 = max(math.floor(g[0] - 5 * s), 0), min(math.ceil(g[0] + 5 * s), width - 1)
    y0, y1 = max(math.floor(g[1] - 5 * s), 0), min(math.ceil(g[1] + 5 * s), height - 1)
    if x0 > x1 or y0 > y1:
        raise SamplerError(f"the 5-sigma box around ({g[0]}, {g[1]}) does not intersect the {width}x{height} mask")
    if x1 - x0 + 1 > 0.9 * width and y1 - y0 + 1 > 0.9 * height:
        return 0, 0, width - 1, height - 1
    return int(x0), int(y0), int(x1), int(y1)


def group_of(dist: np.ndarray) -> np.ndarray:
    """Smallest group index k with d ≤ threshold_k (6 for d > 64 or no boundary); group k holds every pixel ≤ k."""
    d = np.where(dist < 0, np.iinfo(np.int32).max, dist)
    return np.searchsorted(np.array(GROUP_THRESHOLDS), d, side="left").astype(np.int64)


def check_mask(mask) -> np.ndarray:
    if not isinstance(mask, np.ndarray):
        raise SamplerError("mask must be a numpy uint8 or bool array of shape (H, W)")
    if mask.dtype not in (np.uint8, np.bool_):
        raise SamplerError(f"mask must have dtype uint8 or bool, got {mask.dtype}")
    if mask.ndim != 2:
        raise SamplerError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if not mask.flags.c_contiguous:
        raise SamplerError("mask must be C-contiguous (use numpy.ascontiguousarray)")
    if mask.shape[0] < 1 or mask.shape[1] < 1:
        raise SamplerError(f"mask has an empty side: {mask.shape}")
    return mask


def check_group_counts(n) -> tuple[int, ...]:
    try:
        n = tuple(int(v) if float(v) == int(v) else None for v in n)
    except (TypeError, ValueError):
        raise SamplerError("group_counts must be a sequence of 7 ints") from None
    if len(n) != NUM_GROUPS:
        raise SamplerError(f"group_counts must have exactly {NUM_GROUPS} entries, got {len(n)}")
    if any(v is None or v < 0 or v > MAX_TOKENS for v in n):
        raise SamplerError(f"group counts must be ints in [0, {MAX_TOKENS}], got {n}")
    return n


def mask_sample(mask, g6, group_counts, rng: np.random.Generator):
    mask = check_mask(mask)
    n = check_group_counts(group_counts)
    h, w = mask.shape
    g = _floats(g6, 6, "gaussian")
    x0, y0, x1, y1 = crop_box(g, w, h)
    crop = mask[y0 : y1 + 1, x0 : x1 + 1] != 0
    grp = group_of(boundary_distance(crop)).ravel()
    side = crop.ravel()
    cw = x1 - x0 + 1
    labels, coords = [], []
    for k in range(NUM_GROUPS):
        for label, want in ((1, n[k] // 2), (0, n[k] - n[k] // 2)):
            if want == 0:
                continue
            pool = None
            for step in range(2 * NUM_GROUPS):  # g, g−1, g+1, g−2, …
                cand = k if step == 0 else (k - (step + 1) // 2 if step % 2 else k + step // 2)
                if 0 <= cand < NUM_GROUPS:
                    sel = np.flatnonzero((side == label) & (grp <= cand))
                    if sel.size:
                        pool = sel
                        break
            if pool is None:
                raise SamplerError(f"no {'inside' if label else 'outside'} pixels in the 5-sigma crop ({x1 - x0 + 1}x{y1 - y0 + 1} at {x0},{y0}): cannot sample group {k}")
            pix = pool[rng.integers(0, pool.size, want)]
            px = x0 + pix % cw + (rng.random(want) - 0.5)
            py = y0 + pix // cw + (rng.random(want) - 0.5)
            labels.append(np.full(want, label, np.uint8))
            coords.append(model_units(np.stack([px, py], 1), w, h))
    if not labels:
        return np.zeros(0, np.uint8), np.zeros((0, 2), np.float32)
    return np.concatenate(labels), np.concatenate(coords)
