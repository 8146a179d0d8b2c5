"""compat="authors" in plain Python/NumPy: the readable twin of ext/fovea_authors.c, bit-identical to it.

The authors' patch sampler (CognitiveModeling/FLIP `ext/`, what the released weights were trained and evaluated
with), reproduced from its behaviour (docs/sampler.md, "compat='authors'"):
- RNG: KISS (MWC ^ CONG) + SHR3 and the 128-strip float ziggurat, seeded as their initialize_ziggurat(seed);
- single-precision arithmetic in their operation order. Each float op is done in double and rounded once to
  float32 (`_f`): exact for +, −, ×, ÷ and √ because 53 ≥ 2·24 + 2 bits, so the result is the IEEE float result;
- allocation from the last size to the first, placement in the order given, ≤ 10·n_i candidates per size, taken
  from a 256-pair buffer refilled when 240 are used;
- the spatial hash: cell = half the patch size with the largest count; one `next` link per box, re-linked in every
  cell the box joins, so lists merge and a stored box is counted once per visited cell whose list reaches it.
Slow (Python loops): it checks the C code, it does not train.
"""
from __future__ import annotations

import math

import numpy as np

from . import reference as _ref
from .errors import SamplerError

M32 = 0xFFFFFFFF
BUFFER, REFILL_MARGIN = 256, 16  # their Gaussian buffer: refilled once BUFFER − REFILL_MARGIN pairs are used
SQRT2 = 1.4142135623730951
MAX_SEED = 2**32  # their seed is a C int; seeds here are its uint32 bit pattern
MAX_TAU_COVERAGE = 1e30  # float32 parameters


def _f(x: float) -> float:
    """Round a double to float32 (returned as a Python float holding the float32 value)."""
    return float(np.float32(x))


def _ziggurat_tables():
    """The float ziggurat tables (r = 3.442619855899, v = 9.91256303526217e-3), built in double like theirs."""
    kn, wn, fn = [0] * 128, [0.0] * 128, [0.0] * 128
    dn = tn = 3.442619855899
    vn, m1 = 9.91256303526217e-03, 2147483648.0
    q = vn / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * m1)
    kn[1] = 0
    wn[0] = _f(q / m1)
    wn[127] = _f(dn / m1)
    fn[0] = 1.0
    fn[127] = _f(math.exp(-0.5 * dn * dn))
    for i in range(126, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * m1)
        tn = dn
        fn[i] = _f(math.exp(-0.5 * dn * dn))
        wn[i] = _f(dn / m1)
    return kn, wn, fn


KN, WN, FN = _ziggurat_tables()
TAIL_R = _f(3.442620)


class KissRng:
    """The authors' generator state, seeded as initialize_ziggurat(seed)."""

    def __init__(self, seed: int):
        s = int(seed)
        if not 0 <= s < MAX_SEED:
            raise SamplerError(f"compat='authors' takes a seed in [0, 2**32) (their int seed), got {seed}")
        self.jsr = (s ^ 0xCAFEBABE) & M32
        self.jcong = (s * 69069 + 1234567) & M32
        self.w = (s * 1664525 + 1013904223) & M32
        self.z = (s * 18000 + 987654321) & M32

    def kiss(self) -> int:
        self.z = (36969 * (self.z & 65535) + (self.z >> 16)) & M32
        self.w = (18000 * (self.w & 65535) + (self.w >> 16)) & M32
        mwc = ((self.z << 16) + self.w) & M32
        self.jcong = (69069 * self.jcong + 1234567) & M32
        j = self.jsr
        self.jsr ^= (self.jsr << 13) & M32
        self.jsr ^= self.jsr >> 17
        self.jsr ^= (self.jsr << 5) & M32
        return ((mwc ^ self.jcong) + j + self.jsr) & M32

    def _signed(self) -> int:
        k = self.kiss()
        return k - 2**32 if k >= 2**31 else k

    def _uni(self) -> float:  # the ziggurat's double uniform in (0, 1)
        return 0.5 + self._signed() * 0.2328306e-09

    def uniform(self) -> float:  # r4_uni_value
        return _f(self._uni())

    def normal(self) -> float:  # r4_nor_value
        hz = self._signed()
        iz = hz & 127
        if abs(hz) < KN[iz]:
            return _f(_f(hz) * WN[iz])
        while True:
            x = _f(_f(hz) * WN[iz])
            if iz == 0:  # base strip: Marsaglia's tail
                while True:
                    x = _f(-math.log(self._uni()) * 0.2904764)
                    y = _f(-math.log(self._uni()))
                    if not _f(y + y) < _f(x * x):
                        break
                return _f(TAIL_R + x) if hz > 0 else _f(-TAIL_R - x)
            if FN[iz] + self._uni() * _f(FN[iz - 1] - FN[iz]) < math.exp(-0.5 * x * x):
                return x
            hz = self._signed()
            iz = hz & 127
            if abs(hz) < KN[iz]:
                return _f(_f(hz) * WN[iz])


# ----------------------------------------------------------------------------- preparation
def sampling_gaussian(g6) -> tuple[float, ...]:
    """g6 (pixels, no widening, a unflipped; validated) → float32 (μx, μy, σ1, σ2, a, b) used for placement."""
    g = [float(v) for v in g6]
    mx, my = _f(g[0]), _f(g[1])
    s1, s2 = _f(g[2] * SQRT2), _f(g[3] * SQRT2)
    a, b = _f(-g[4]), _f(g[5])
    scale = _f(math.sqrt(_f(_f(a * a) + _f(b * b))))
    if scale > 1e-16:
        a, b = _f(a / scale), _f(b / scale)
    return mx, my, s1, s2, a, b


def allocate(s1w: float, s2w: float, num_tokens: int, sizes, coverage: float) -> tuple[int, ...]:
    """Their counts: n̄_i = (int)(float(2π σ1 σ2)·c / p_i²), from the last size to the first. (int) of a float
    ≥ 2³¹ is INT_MIN on x86, where their code ran: such a size gets 0."""
    integral = _f(2.0 * math.pi * s1w * s2w)
    counts = [0] * len(sizes)
    remaining = int(num_tokens)
    for i in range(len(sizes) - 1, -1, -1):
        p = _f(sizes[i])
        v = _f(_f(integral * coverage) / _f(p * p))
        avg = int(v) if v < 2147483648.0 else -(2**31)
        rem_f, avg_f = _f(remaining), _f(avg)
        m = rem_f if rem_f < avg_f else avg_f
        counts[i] = int(m) if m > 0 else 0
        remaining -= counts[i]
    return tuple(counts)


def candidate_buffer(rng: KissRng, g) -> tuple[np.ndarray, np.ndarray]:
    """256 candidate centres (float32): normals drawn as (x, y) pairs, scaled, rotated, shifted in float32."""
    z = np.array([rng.normal() for _ in range(2 * BUFFER)], np.float32)
    mx, my, s1, s2, a, b = (np.float32(v) for v in g)
    zx, zy = z[0::2] * s1, z[1::2] * s2
    return (a * zx - b * zy) + mx, (b * zx + a * zy) + my


# ----------------------------------------------------------------------------- the spatial hash
class SpatialHash:
    """Their overlap structure, quirks included (see the module docstring)."""

    EPS = _f(1e-6)

    def __init__(self, cell: float):
        self.cell = cell
        self.head: dict[tuple[int, int], int] = {}
        self.boxes: list[tuple[float, float, float, float]] = []
        self.guard: list[tuple[float, float, float, float]] = []  # (x_min + ε, y_min + ε, x_max − ε, y_max − ε)
        self.next: list[int] = []

    def _cells(self, x0, y0, x1, y1):
        c = self.cell
        cx0, cy0 = math.floor(_f(x0 / c)), math.floor(_f(y0 / c))
        cx1, cy1 = math.floor(_f(x1 / c)), math.floor(_f(y1 / c))
        return [(cx, cy) for cy in range(cy0, cy1 + 1) for cx in range(cx0, cx1 + 1)]  # rows outer, as theirs

    def overlaps(self, x0, y0, x1, y1, thr) -> bool:
        total = 0.0
        for key in self._cells(x0, y0, x1, y1):
            j = self.head.get(key, -1)
            while j >= 0:
                gx0, gy0, gx1, gy1 = self.guard[j]
                if not (x1 < gx0 or x0 > gx1 or y1 < gy0 or y0 > gy1):
                    bx0, by0, bx1, by1 = self.boxes[j]
                    w = _f(min(x1, bx1) - max(x0, bx0))
                    h = _f(min(y1, by1) - max(y0, by0))
                    total = _f(total + _f(w * h))
                    if total > thr:
                        return True
                j = self.next[j]
        return False

    def add(self, x0, y0, x1, y1) -> None:
        j = len(self.boxes)
        e = self.EPS
        self.boxes.append((x0, y0, x1, y1))
        self.guard.append((_f(x0 + e), _f(y0 + e), _f(x1 - e), _f(y1 - e)))
        self.next.append(-1)
        for key in self._cells(x0, y0, x1, y1):
            self.next[j] = self.head.get(key, -1)  # one link per box, overwritten at every cell
            self.head[key] = j


# ----------------------------------------------------------------------------- extraction
def extract_patches(image: np.ndarray, centres, p: int) -> np.ndarray:
    """Float32 bilinear patches (n, p, p, 3) uint8 at float32 centres, rounded half away from zero."""
    out = np.zeros((len(centres), p, p, 3), np.uint8)
    half = np.float32(p) / np.float32(2)
    off = np.arange(p, dtype=np.float32) - half + np.float32(0.5)
    img = image.astype(np.float32)
    one = np.float32(1)
    for m, (cx, cy) in enumerate(centres):
        px, py = np.float32(cx) + off, np.float32(cy) + off
        x0, y0 = px.astype(np.int64), py.astype(np.int64)
        dx = (px - x0.astype(np.float32))[None, :, None]
        dy = (py - y0.astype(np.float32))[:, None, None]
        f00 = img[y0[:, None], x0[None, :]]
        f01 = img[y0[:, None], x0[None, :] + 1]
        f10 = img[y0[:, None] + 1, x0[None, :]]
        f11 = img[y0[:, None] + 1, x0[None, :] + 1]
        v = f00 * (one - dx) * (one - dy) + f01 * dx * (one - dy) + f10 * (one - dx) * dy + f11 * dx * dy
        t = np.trunc(v)
        out[m] = (t + ((v - t) >= 0.5)).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- the whole sampler
def sample_patches(image, g6, num_tokens, sizes, tau, coverage, seed):
    """Returns (counts, patches, coords, tau, coverage) like flip.sampler.reference.sample_patches; tau or
    coverage < 0 are drawn as their wrapper does (τ = U·4, then c = 0.1 + U·1.9, float32)."""
    image = _ref.check_image(image)
    h, w = image.shape[:2]
    _ref.sampling_gaussian(g6, w, h)  # same validation as compat="exact"
    sizes = _ref.check_sizes(sizes)
    num_tokens = _ref.check_tokens(num_tokens)
    if not (math.isfinite(tau) and math.isfinite(coverage)) or coverage == 0:
        raise SamplerError(f"tau and coverage must be finite (coverage > 0), got {tau}, {coverage}")
    if tau > MAX_TAU_COVERAGE or coverage > MAX_TAU_COVERAGE:
        raise SamplerError(f"tau and coverage must be <= 1e30 in compat='authors' (float32), got {tau}, {coverage}")
    rng = KissRng(seed)
    g = sampling_gaussian(g6)
    tau = _f(rng.uniform() * 4.0) if tau < 0 else _f(tau)
    coverage = _f(0.1 + rng.uniform() * 1.9) if coverage < 0 else _f(coverage)
    counts = allocate(g[2], g[3], num_tokens, sizes, coverage)
    best = max(range(len(sizes)), key=lambda i: (counts[i], -i))  # first size with the largest count
    grid = SpatialHash(_f(sizes[best] / 2.0))
    bx, by = candidate_buffer(rng, g)
    pos = 0
    accepted = [[] for _ in sizes]
    wm1, hm1 = float(w - 1), float(h - 1)
    for i, p in enumerate(sizes):
        half, n = _f(p / 2.0), counts[i]
        thr = _f(_f(float(p) * p) * tau)
        for _ in range(10 * n):
            if len(accepted[i]) >= n:
                break
            if pos >= BUFFER - REFILL_MARGIN:
                bx, by = candidate_buffer(rng, g)
                pos = 0
            cx, cy = float(bx[pos]), float(by[pos])
            pos += 1
            x0, x1, y0, y1 = _f(cx - half), _f(cx + half), _f(cy - half), _f(cy + half)
            if x0 < 0 or x1 >= wm1 or y0 < 0 or y1 >= hm1:
                continue
            if grid.overlaps(x0, y0, x1, y1, thr):
                continue
            grid.add(x0, y0, x1, y1)
            accepted[i].append((cx, cy))
    patches = [extract_patches(image, accepted[i], p) for i, p in enumerate(sizes)]
    coords = []
    for acc in accepted:
        c = np.array(acc, np.float32).reshape(-1, 2)
        coords.append(np.stack([c[:, 0] / np.float32(128) - np.float32(w) / np.float32(256),
                                c[:, 1] / np.float32(128) - np.float32(h) / np.float32(256)], axis=1).astype(np.float32))
    return tuple(len(a) for a in accepted), patches, coords, tau, coverage


def gaussian_px_from_rot(rot6_norm, width: int, height: int) -> np.ndarray:
    """The pixel Gaussian g6 for which compat="authors" sees exactly the float32 values the authors' wrapper
    derives from a norm-frame rot position (float32), W and H: μ = (m + 1)·W/2, σ = s·√2·W/2 (σ2 with H), a, b."""
    p = [np.float32(v) for v in _ref._floats(rot6_norm, 6, "position")]
    W, H, two = np.float32(width), np.float32(height), np.float32(2)
    r2 = np.float32(math.sqrt(2.0))  # sqrtf(2)
    mx = (p[0] + np.float32(1)) * W / two
    my = (p[1] + np.float32(1)) * H / two
    s1 = (p[2] * r2) * W / two  # widened, as the sampler uses it
    s2 = (p[3] * r2) * H / two
    # un-widen in double: (float)(g·√2) then lands exactly on s1, s2 (the double error is far below float32 ulp)
    return np.array([float(mx), float(my), float(s1) / SQRT2, float(s2) / SQRT2, float(p[4]), float(p[5])])
