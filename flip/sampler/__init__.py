"""Fovea sampler, public API (docs/sampler.md; docs/flip.md §3, §6.2, §6.4).

Every function takes an explicit `seed` and `backend="c"` (the `flip._fovea` extension, default) or
`backend="numpy"` (the NumPy twins in this package). Same seed ⇒ same output, in every run and every thread; there
is no hidden RNG state. Gaussians are `g = (μx, μy, s1, s2, a, b)` in pixels, authors' rot convention, without the
√2 widening (`flip.gaussian.sampler_gaussian`); the sampler widens and flips.

Patch sampling has two rules (`compat`, docs/sampler.md):
  "exact"   the overlap rule of docs/flip.md §3.5 as intended (summed intersection area ≤ τ·p²), xoshiro256++ stream;
  "authors" the authors' sampler bit for bit (KISS + ziggurat seeded as their initialize_ziggurat(seed), their
            allocation and placement order, their spatial hash with its quirks): what their weights were trained
            and evaluated with. Seeds must be < 2**32.
The default is "exact" (today's behaviour, so code that does not pass it yet is unchanged); callers should pass
`compat` explicitly, taken from the weights they run (the rule belongs to the weights).

Modules: reference.py (NumPy twin of "exact", PCG64 stream: agrees with C on the deterministic parts and in
distribution), authors.py (NumPy twin of "authors": bit-identical to C), errors.py (SamplerError).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import authors as _authors
from . import reference as _ref
from .errors import SamplerError

try:
    from .. import _fovea
except ImportError as exc:  # the NumPy backend still works; the C one says how to build it
    _fovea = None
    _IMPORT_ERROR = exc

PATCH_SIZES = (1, 2, 4, 8, 16)
DEFAULT_GROUP_COUNTS = (2048 // 7 + 2048 % 7,) + (2048 // 7,) * 6  # (296, 292, …): docs/flip.md §6.4
FAR_SIGMAS = _ref.FAR_SIGMAS
BACKENDS = ("c", "numpy")
COMPAT_MODES = ("exact", "authors")
DEFAULT_COMPAT = "exact"


@dataclass
class PatchSet:
    """Patches of one object, one entry per patch size in input order (docs/flip.md §3.1)."""

    sizes: tuple[int, ...]
    patches: list[np.ndarray]  # uint8 (n_i, p, p, 3), HWC
    coords: list[np.ndarray]  # float32 (n_i, 2), patch centres in model units
    counts: list[int]
    tau: float = 0.0  # the τ and c actually used (drawn when None was passed)
    coverage: float = 0.0

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    def target_indices(self) -> list[np.ndarray]:
        """int32 (n_i,) cumulative 0..N−1 in patch-size order, as the authors' collate expects."""
        out, start = [], 0
        for n in self.counts:
            out.append(np.arange(start, start + n, dtype=np.int32))
            start += n
        return out


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampler backend {backend!r}; choose one of {BACKENDS}")
    if backend == "c" and _fovea is None:
        raise ImportError(
            f"the C extension flip._fovea is not built ({_IMPORT_ERROR}); run `pip install -e .` or "
            "`python setup.py build_ext --inplace`, or pass backend='numpy'"
        )
    return backend


def _compat(compat: str) -> str:
    if compat not in COMPAT_MODES:
        raise ValueError(f"unknown sampler compat mode {compat!r}; choose one of {COMPAT_MODES}")
    return compat


def _seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise SamplerError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return int(seed)


def _tau_cov(tau, coverage) -> tuple[float, float]:
    """None ⇒ drawn from the seed as in training (τ ~ U[0,4), c ~ U[0.1,2)); explicit values must be valid."""
    t = -1.0 if tau is None else float(tau)
    c = -1.0 if coverage is None else float(coverage)
    if tau is not None and not (np.isfinite(t) and t >= 0):
        raise SamplerError(f"tau must be finite and >= 0 (or None to draw it), got {tau}")
    if coverage is not None and not (np.isfinite(c) and c > 0):
        raise SamplerError(f"coverage must be finite and > 0 (or None to draw it), got {coverage}")
    return t, c


def _patchset(sizes, raw) -> PatchSet:
    counts, patches, coords, tau, cov = raw
    return PatchSet(tuple(int(s) for s in sizes), list(patches), list(coords), [int(n) for n in counts], float(tau), float(cov))


def sample_patches(
    image: np.ndarray,
    g_px6: Sequence[float],
    num_tokens: int = 512,
    patch_sizes: Sequence[int] = PATCH_SIZES,
    tau: float | None = 2.67,
    coverage: float | None = 1.44,
    seed: int = 0,
    backend: str = "c",
    compat: str = DEFAULT_COMPAT,
) -> PatchSet:
    """Fovea-like patches around one Gaussian (docs/flip.md §3.1–3.5).

    image: uint8 (H, W, 3) RGB, C-contiguous, at least 3×3. Raises SamplerError on bad input, including a mean more
    than FAR_SIGMAS (5) widened stds outside the image (both modes).

    compat="exact": counts are allocated coarse to fine (§3.2); patch sizes that cannot fit the image
    (p ≥ min(H, W) − 1) get zero patches and take no budget. Placement runs fine to coarse, ≤ 10·n_i candidates per
    size; a candidate is rejected when its box leaves the image (1-px margin) or its summed intersection area with
    all accepted patches exceeds τ·p².
    compat="authors": the authors' sampler bit for bit (docs/sampler.md): float32 arithmetic, sizes allocated from
    the last to the first and placed in the order given (pass them ascending, as the authors do), no size dropped
    for not fitting, their spatial-hash overlap test. seed must be < 2**32. For bit-identity with a norm-frame rot
    position, build g_px6 with `authors_gaussian_px` (float32 chain of their wrapper).
    """
    _backend(backend)
    _compat(compat)
    t, c = _tau_cov(tau, coverage)
    seed = _seed(seed)
    sizes = _ref.check_sizes(patch_sizes)
    if backend == "c":
        g = _ref._floats(g_px6, 6, "gaussian").tolist()
        return _patchset(sizes, _fovea.sample_patches(image, g, _ref.check_tokens(num_tokens), sizes, t, c, seed, compat))
    twin = _authors if compat == "authors" else _ref
    return _patchset(sizes, twin.sample_patches(image, g_px6, num_tokens, sizes, t, c, seed))


def sample_patches_many(
    image: np.ndarray,
    gaussians,
    num_tokens: int = 512,
    patch_sizes: Sequence[int] = PATCH_SIZES,
    tau: float | None = 2.67,
    coverage: float | None = 1.44,
    seeds=None,
    backend: str = "c",
    errors: str = "raise",
    compat: str = DEFAULT_COMPAT,
) -> list:
    """sample_patches for K objects of one image; the C backend runs the whole loop with the GIL released.

    gaussians: (K, 6) pixels as for sample_patches. seeds: (K,) ints (default 0..K−1), one independent stream per
    object. compat as for sample_patches.
    errors="raise": the first invalid object raises SamplerError naming its index; errors="return": its list entry
    is the SamplerError instance and the other objects are still sampled (batch jobs count and skip it).
    """
    _backend(backend)
    _compat(compat)
    if errors not in ("raise", "return"):
        raise ValueError("errors must be 'raise' or 'return'")
    t, c = _tau_cov(tau, coverage)
    sizes = _ref.check_sizes(patch_sizes)
    g = np.asarray(gaussians, dtype=np.float64)
    if g.ndim != 2 or g.shape[1] != 6:
        raise SamplerError(f"gaussians must be (K, 6), got shape {g.shape}")
    k = len(g)
    seeds = np.arange(k, dtype=np.uint64) if seeds is None else [_seed(s) for s in seeds]
    seeds = np.asarray(seeds, dtype=np.uint64)
    if seeds.shape != (k,):
        raise SamplerError(f"need one seed per Gaussian: {k} Gaussians, {seeds.shape} seeds")
    if backend == "c":
        raw = _fovea.sample_patches_many(image, np.ascontiguousarray(g), _ref.check_tokens(num_tokens), sizes, t, c, seeds, compat)
    else:
        twin = _authors if compat == "authors" else _ref
        raw = []
        for j in range(k):
            try:
                raw.append(twin.sample_patches(image, g[j], num_tokens, sizes, t, c, int(seeds[j])))
            except SamplerError as e:
                raw.append(e)
    out = []
    for j, r in enumerate(raw):
        if isinstance(r, Exception):
            err = SamplerError(f"object {j}: {r}")
            if errors == "raise":
                raise err
            out.append(err)
        else:
            out.append(_patchset(sizes, r))
    return out


def authors_gaussian_px(rot6_norm: Sequence[float], width: int, height: int) -> np.ndarray:
    """Pixel Gaussian g6 (float64, un-widened, a unflipped) from a norm-frame rot position, through the float32
    chain of the authors' wrapper: sample_patches(..., compat="authors") then sees exactly the float32 Gaussian
    their sampler sees for the float32 rot (μ = (m + 1)·W/2, σ = s·√2·W/2 with W for s1 and H for s2). Values
    differ from flip.gaussian.sampler_gaussian (float64) by float32 rounding only."""
    return _authors.gaussian_px_from_rot(rot6_norm, int(width), int(height))


def authors_rot_from_rho(rho) -> np.ndarray:
    """float32 (6,) or (n, 6) norm-frame rot from rho (5,) / (n, 5): the authors' compute_position_rot_from_rho
    (docs/flip.md §0) in IEEE single precision, their operation order. With authors_gaussian_px it gives the g their
    sampler sees, so compat="authors" reproduces their pipeline's patches bit for bit (their code compiled with
    IEEE arithmetic; their -ffast-math -march=native build contracts FMAs and uses the CPU's approximate
    reciprocal, which moves some values by an ulp on some CPUs: see scripts/parity_vs_authors.py)."""
    r = np.asarray(rho, dtype=np.float32)
    x = r.reshape(-1, 5)
    f = np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        vx, vy, vxy = x[:, 2], x[:, 3], x[:, 4]
        term = np.sqrt(np.maximum((vx - vy) * (vx - vy) + f(4) * vxy * vxy, f(1e-16)))
        s1 = np.sqrt(np.maximum((vx + vy) / f(2) - term / f(2), f(1e-16)))
        s2 = np.sqrt(np.maximum((vx + vy) / f(2) + term / f(2), f(1e-16)))
        a = f(2) * vxy * f(1) / np.maximum(vx - vy + term, f(1e-16))
        b = np.ones_like(a)
        scale = np.sqrt(np.maximum(a * a + b * b, f(1e-16)))
        out = np.stack([x[:, 0], x[:, 1], s1, s2, a / scale, b / scale], axis=1).astype(np.float32)
    return out[0] if r.ndim == 1 else out


def authors_position(rho, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(rot, g) = (authors_rot_from_rho(rho), authors_gaussian_px(rot, width, height)) for one rho (5,), in one C call:
    the same IEEE float32 operations in the same order, so the same bits (tests/test_sampler_authors.py), ~1 µs
    instead of ~40 µs of NumPy scalar work per object."""
    if _fovea is None:  # (extension not built: the NumPy twin)
        rot = authors_rot_from_rho(np.asarray(rho, np.float64).reshape(5))
        return rot, authors_gaussian_px(rot, width, height)
    rot, g = _fovea.authors_position(rho, int(width), int(height))
    return np.array(rot, np.float32), np.array(g, np.float64)


def place_patches(image, patch_sizes, counts, candidates, tau: float, backend: str = "c"):
    """Placement and extraction from given candidate centres (pixels, one (m, 2) array per size) with the
    compat="exact" rule: the deterministic half of sample_patches, exposed so both backends can be compared on one
    candidate stream.
    Returns (PatchSet, accepted centres per size in pixels)."""
    _backend(backend)
    sizes = _ref.check_sizes(patch_sizes)
    cands = [np.ascontiguousarray(np.asarray(x, np.float64).reshape(-1, 2)) for x in candidates]
    if backend == "c":
        raw, centres = _fovea.place_patches(image, sizes, tuple(int(n) for n in counts), cands, float(tau))
        return _patchset(sizes, raw), centres
    got, patches, coords, centres = _ref.place(image, sizes, counts, float(tau), cands)
    return PatchSet(sizes, patches, coords, got, float(tau), 0.0), centres


def allocate_counts(
    s1_px: float,
    s2_px: float,
    num_tokens: int = 512,
    patch_sizes: Sequence[int] = PATCH_SIZES,
    coverage: float = 1.44,
    image_shape: tuple[int, int] | None = None,
    widen: bool = True,
    backend: str = "c",
) -> tuple[int, ...]:
    """Patch counts per size (docs/flip.md §3.2), in input order.

    s1_px, s2_px are the object stds in pixels as in g (NOT widened): with widen=True (default) they are multiplied
    by √2 first, exactly as sample_patches does; pass widen=False if they are already the sampling stds.
    image_shape=(H, W) drops the sizes that cannot fit the image (as sample_patches does).
    """
    _backend(backend)
    s1, s2 = float(s1_px), float(s2_px)
    if widen:
        s1, s2 = s1 * np.sqrt(2.0), s2 * np.sqrt(2.0)
    h, w = (0, 0) if image_shape is None else (int(image_shape[0]), int(image_shape[1]))
    sizes = _ref.check_sizes(patch_sizes)
    if backend == "c":
        return tuple(_fovea.allocate_counts(s1, s2, _ref.check_tokens(num_tokens), sizes, float(coverage), w, h))
    return _ref.allocate(s1, s2, num_tokens, sizes, float(coverage), w, h)


def sample_num_tokens(seed: int, min_tokens: int = 32, max_tokens: int = 2048, mean_tokens: float = 512, backend: str = "c") -> int:
    """Training token budget (docs/flip.md §3.4): min + round(Beta(2, 2(1/m − 1))·(max − min)), m = (mean − min)/(max − min)."""
    _backend(backend)
    seed = _seed(seed)
    if backend == "c":
        return int(_fovea.sample_num_tokens(seed, int(min_tokens), int(max_tokens), float(mean_tokens)))
    return _ref.num_tokens(np.random.default_rng(seed), int(min_tokens), int(max_tokens), float(mean_tokens))


def augment_position(rot6_norm: Sequence[float], seed: int, backend: str = "c") -> np.ndarray:
    """Training-time Gaussian augmentation in the norm frame, rot format (docs/flip.md §6.2): shift 0.1σ, rotation
    ≤ 20°·minor/major, σ noise 10 % clipped at 30 %, isotropic blend. Returns float64 (6,)."""
    _backend(backend)
    seed = _seed(seed)
    if backend == "c":
        return np.array(_fovea.augment_position(_ref._floats(rot6_norm, 6, "position").tolist(), seed))
    return _ref.augment(np.random.default_rng(seed), rot6_norm)


def sample_mask_pixels(
    mask: np.ndarray,
    g_px6: Sequence[float],
    group_counts: Sequence[int] = DEFAULT_GROUP_COUNTS,
    seed: int = 0,
    backend: str = "c",
) -> tuple[np.ndarray, np.ndarray]:
    """Training target pixels by boundary distance (docs/flip.md §6.4).

    mask: uint8 or bool (H, W), non-zero = object. g_px6 in pixels (no widening; only μ and max(s1, s2) are used).
    Crop to the 5σ box, distance = L1 to the nearest boundary pixel (either side), 7 nested groups d ≤ 2, 4, 8, 16,
    32, 64, all; group g gives ⌊n_g/2⌋ inside then the rest outside, uniform with replacement, ±0.5 px jitter;
    an empty group list falls back to g, g−1, g+1, g−2, …. Returns labels uint8 (M,) in {0, 1} and coords float32
    (M, 2) in model units, ordered [g0 inside, g0 outside, g1 inside, …]. SamplerError when a side has no pixel
    in the crop (e.g. the crop is all object) or the crop misses the mask.
    """
    _backend(backend)
    seed = _seed(seed)
    n = _ref.check_group_counts(group_counts)
    if backend == "c":
        if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
            mask = mask.view(np.uint8)
        return _fovea.sample_mask_pixels(mask, _ref._floats(g_px6, 6, "gaussian").tolist(), n, seed)
    return _ref.mask_sample(mask, g_px6, n, np.random.default_rng(seed))


def boundary_distance(crop: np.ndarray, backend: str = "c") -> np.ndarray:
    """The §6.4 distance map of a binary crop (int32, −1 where the crop has no boundary)."""
    _backend(backend)
    if backend == "c":
        return _fovea.boundary_distance(np.ascontiguousarray(crop, dtype=np.uint8))
    return _ref.boundary_distance(crop)
