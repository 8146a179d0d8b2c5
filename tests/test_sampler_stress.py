"""Randomised stress test of the C sampler: extreme images, Gaussians, sizes, τ and c; invariants, never a crash.

The default run does 1500 patch cases (70 % typical, 30 % extreme) and 500 mask cases; `-m slow` runs 20000 + 5000. For a memory check run
`python tests/test_sampler_stress.py N` under valgrind or an ASan build (see docs/sampler.md).
"""
import sys

import numpy as np
import pytest

from flip import sampler as S
from flip.sampler import reference as R

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")

SIZE_POOL = [1, 2, 3, 4, 5, 8, 12, 16, 32, 64]


def random_case(rng):
    if rng.random() < 0.7:  # typical: objects from a pixel to a third of the image, inside it
        h, w = (int(v) for v in rng.integers(16, 300, 2))
        s1, s2 = np.exp(rng.uniform(np.log(0.5), np.log(max(0.3 * min(h, w), 0.6)), 2))
        mx, my = rng.uniform(0, w), rng.uniform(0, h)
        n = int(rng.integers(32, 2049))
        cov = float(rng.uniform(0.1, 2.0))
    else:  # extremes: 3-px sides, σ from 1e-3 to 1e5 px, means far outside, 0 or 3000 tokens
        h, w = (int(v) for v in np.exp(rng.uniform(np.log(3), np.log(400), 2)))
        s1, s2 = np.exp(rng.uniform(np.log(1e-3), np.log(1e5), 2))
        far = min(5 * np.sqrt(2) * max(s1, s2), 1e6)
        mx, my = rng.uniform(-far, w - 1 + far), rng.uniform(-far, h - 1 + far)
        n = int(rng.choice([0, 1, 3000]))
        cov = float(np.exp(rng.uniform(np.log(0.01), np.log(5))))
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    th = rng.uniform(0, 2 * np.pi)
    g = (mx, my, s1, s2, np.cos(th), np.sin(th))
    sizes = tuple(int(s) for s in rng.choice(SIZE_POOL, size=int(rng.integers(1, 6)), replace=False))
    tau = float(rng.choice([0.0, 1e-9, rng.uniform(0, 4), 100.0]))
    return img, g, n, sizes, tau, cov


def check_patch_case(img, g, n, sizes, tau, cov, seed):
    h, w = img.shape[:2]
    try:
        ps = S.sample_patches(img, g, n, sizes, tau, cov, seed=seed)
    except S.SamplerError as e:
        assert str(e)
        return "error"
    alloc = S.allocate_counts(g[2], g[3], n, sizes, cov, (h, w))
    boxes = []
    for p, patches, coords, got, a in zip(ps.sizes, ps.patches, ps.coords, ps.counts, alloc):
        assert 0 <= got <= a
        assert patches.shape == (got, p, p, 3) and coords.shape == (got, 2)
        cx = (coords[:, 0].astype(np.float64) + w / 256) * 128
        cy = (coords[:, 1].astype(np.float64) + h / 256) * 128
        tol = 1e-3
        assert np.all(cx - p / 2 >= -tol) and np.all(cx + p / 2 < w - 1 + tol)
        assert np.all(cy - p / 2 >= -tol) and np.all(cy + p / 2 < h - 1 + tol)
        if got:
            # coords agree with the pixels: re-extract at the (float32-rounded) centres
            cxc = np.clip(cx, p / 2, w - 1 - p / 2 - 1e-9)
            cyc = np.clip(cy, p / 2, h - 1 - p / 2 - 1e-9)
            ref = R.extract_patches(img, np.stack([cxc, cyc], 1), p)
            assert np.abs(ref.astype(int) - patches.astype(int)).max() <= 1
        boxes.append((p, cx, cy))
    assert sum(ps.counts) <= n
    # overlap rule: in placement order (fine to coarse), each box's summed overlap with earlier ones ≤ τp²
    boxes.sort(key=lambda b: b[0])
    prev = np.zeros((0, 4))
    for p, cx, cy in boxes:
        for x, y in zip(cx, cy):
            b = (x - p / 2, y - p / 2, x + p / 2, y + p / 2)
            if len(prev):
                ix = np.minimum(b[2], prev[:, 2]) - np.maximum(b[0], prev[:, 0])
                iy = np.minimum(b[3], prev[:, 3]) - np.maximum(b[1], prev[:, 1])
                hit = (ix > 1e-6) & (iy > 1e-6)
                assert np.sum(ix[hit] * iy[hit]) <= tau * p * p + 4 * p * 1e-3
            prev = np.vstack([prev, b])
    return ps.total


def random_mask_case(rng):
    h, w = (int(v) for v in np.exp(rng.uniform(0, np.log(300), 2)))
    kind = rng.integers(0, 4)
    if kind == 0:
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    elif kind == 1:
        m = np.zeros((h, w), np.uint8)
        m[rng.integers(0, h) :, rng.integers(0, w) :] = 1
    elif kind == 2:
        m = np.full((h, w), int(rng.integers(0, 2)), np.uint8)
    else:
        m = (rng.random((h, w)) < 0.5).astype(np.uint8) * 255
    g = (rng.uniform(-50, w + 50), rng.uniform(-50, h + 50), *np.exp(rng.uniform(-5, 6, 2)), 0.0, 1.0)
    counts = tuple(int(v) for v in rng.integers(0, 50, 7))
    return m, g, counts


def check_mask_case(m, g, counts, seed):
    try:
        labels, coords = S.sample_mask_pixels(m, g, counts, seed=seed)
    except S.SamplerError as e:
        assert str(e)
        return "error"
    h, w = m.shape
    assert labels.shape == (sum(counts),) and coords.shape == (sum(counts), 2)
    bx = np.rint(coords[:, 0].astype(np.float64) * 128 + w / 2).astype(int)
    by = np.rint(coords[:, 1].astype(np.float64) * 128 + h / 2).astype(int)
    assert np.all((bx >= 0) & (bx < w) & (by >= 0) & (by < h))
    np.testing.assert_array_equal(labels, (m[by, bx] != 0).astype(np.uint8))
    start = 0
    for k in counts:
        assert (labels[start : start + k // 2] == 1).all() and (labels[start + k // 2 : start + k] == 0).all()
        start += k
    return "ok"


def run(n_patch, n_mask, seed=0):
    rng = np.random.default_rng(seed)
    outcomes = {"ok": 0, "error": 0, "patches": 0}
    for i in range(n_patch):
        r = check_patch_case(*random_case(rng), seed=i)
        outcomes["ok" if r != "error" else "error"] += 1
        outcomes["patches"] += r if r != "error" else 0
    for i in range(n_mask):
        outcomes[check_mask_case(*random_mask_case(rng), seed=i)] += 1
    # invalid input mixed in: must raise, never crash
    for bad in (np.nan, np.inf, -np.inf, 0.0, -1.0):
        img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        for k in range(6):
            g = [10.0, 10.0, 3.0, 3.0, 0.0, 1.0]
            g[k] = bad
            try:
                S.sample_patches(img, g, 100, (1, 2, 4), 1.0, 1.0, seed=0)
            except S.SamplerError:
                pass
    return outcomes


def test_stress_default():
    out = run(1500, 500)
    assert out["ok"] > 1000 and out["patches"] > 50000  # most random cases are valid and placed patches


@pytest.mark.slow
def test_stress_long():
    out = run(20000, 5000, seed=1)
    assert out["ok"] > 15000 and out["patches"] > 10**6


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1500, 500))
