"""Mask-pixel sampler (docs/flip.md §6.4): distance map, nested groups, inside/outside split, fallback, order, parity."""
import numpy as np
import pytest

from flip import sampler as S
from flip.sampler import reference as R

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")

THR = (2, 4, 8, 16, 32, 64, 10**9)


def bfs_distance(crop):
    """Slow reference: multi-source BFS over 4-neighbours from every boundary pixel."""
    from collections import deque

    m = crop != 0
    h, w = m.shape
    d = np.full((h, w), -1, int)
    q = deque()
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and m[yy, xx] != m[y, x]:
                    d[y, x] = 0
                    q.append((y, x))
                    break
    while q:
        y, x = q.popleft()
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and d[yy, xx] < 0:
                d[yy, xx] = d[y, x] + 1
                q.append((yy, xx))
    return d


def blob(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), np.uint8)
    for _ in range(3):
        cy, cx, r = rng.uniform(20, h - 20), rng.uniform(20, w - 20), rng.uniform(5, 25)
        m |= ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
    return m


@pytest.mark.parametrize("seed", range(4))
def test_distance_map_c_numpy_bfs(seed):
    m = blob(50, 70, seed)
    d_bfs = bfs_distance(m)
    np.testing.assert_array_equal(S.boundary_distance(m, backend="c"), d_bfs)
    np.testing.assert_array_equal(S.boundary_distance(m, backend="numpy"), d_bfs)
    flat = np.ones((5, 6), np.uint8)
    assert (S.boundary_distance(flat) == -1).all() and (S.boundary_distance(flat, backend="numpy") == -1).all()


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_groups_nested_split_and_order(backend):
    m = blob(seed=1)
    h, w = m.shape
    ys, xs = np.nonzero(m)
    g6 = (xs.mean(), ys.mean(), xs.std(), ys.std(), 0.0, 1.0)
    n = (30, 21, 20, 20, 20, 20, 41)
    labels, coords = S.sample_mask_pixels(m, g6, n, seed=3, backend=backend)
    assert labels.dtype == np.uint8 and coords.dtype == np.float32
    assert labels.shape == (sum(n),) and coords.shape == (sum(n), 2)
    px = coords[:, 0].astype(np.float64) * 128 + w / 2
    py = coords[:, 1].astype(np.float64) * 128 + h / 2
    base_x, base_y = np.rint(px).astype(int), np.rint(py).astype(int)
    assert np.all(np.abs(px - base_x) <= 0.5 + 1e-4) and np.all(np.abs(py - base_y) <= 0.5 + 1e-4)
    x0, y0, x1, y1 = R.crop_box(g6, w, h)
    # label is the base pixel's value; distances measured on the 5σ crop
    inside = (base_x >= x0) & (base_x <= x1) & (base_y >= y0) & (base_y <= y1)
    assert inside.all()
    np.testing.assert_array_equal(labels, m[base_y, base_x] != 0)
    dist = bfs_distance(m[y0 : y1 + 1, x0 : x1 + 1])[base_y - y0, base_x - x0]
    start = 0
    for g, k in enumerate(n):
        block_l, block_d = labels[start : start + k], dist[start : start + k]
        assert (block_l[: k // 2] == 1).all() and (block_l[k // 2 :] == 0).all()  # inside first, then outside
        assert block_d.max() <= THR[g]  # nested: d ≤ threshold of the group
        start += k


def test_group_draws_are_uniform_over_nested_group():
    # a half-plane: distances grow linearly, so group 1 (d ≤ 4) on the inside holds 5 columns uniformly
    m = np.zeros((40, 40), np.uint8)
    m[:, :20] = 1
    g6 = (20, 20, 20, 20, 0, 1)
    labels, coords = S.sample_mask_pixels(m, g6, (0, 4000, 0, 0, 0, 0, 0), seed=1)
    x = np.rint(coords[:2000, 0] * 128 + 20).astype(int)
    assert set(x.tolist()) == {15, 16, 17, 18, 19}
    counts = np.bincount(x)[15:20]
    assert counts.min() > 330  # 400 expected each


def test_fallback_and_failure():
    # a thin object: inside pixels all have d ≤ 2, so groups 3.. find their inside pixels by falling back
    m = np.zeros((60, 60), np.uint8)
    m[28:31, 10:50] = 1
    g6 = (30, 30, 8, 8, 0, 1)
    for backend in S.BACKENDS:
        labels, _ = S.sample_mask_pixels(m, g6, (2, 2, 2, 2, 2, 2, 2), seed=0, backend=backend)
        assert labels.tolist() == [1, 0] * 7
        # all object in the crop: no outside pixel anywhere ⇒ SamplerError
        with pytest.raises(S.SamplerError, match="no outside pixels"):
            S.sample_mask_pixels(np.ones((30, 30), np.uint8), (15, 15, 3, 3, 0, 1), (2,) * 7, seed=0, backend=backend)
        with pytest.raises(S.SamplerError, match="no inside pixels"):
            S.sample_mask_pixels(np.zeros((30, 30), np.uint8), (15, 15, 3, 3, 0, 1), (2,) * 7, seed=0, backend=backend)
        # zero counts: nothing needed, nothing drawn
        lab, crd = S.sample_mask_pixels(np.zeros((30, 30), np.uint8), (15, 15, 3, 3, 0, 1), (0,) * 7, seed=0, backend=backend)
        assert lab.shape == (0,) and crd.shape == (0, 2)


def test_group_parity_c_numpy():
    """Both backends draw from the same group sets: compare per-group histograms of sampled distances."""
    m = blob(seed=2)
    ys, xs = np.nonzero(m)
    g6 = (xs.mean(), ys.mean(), xs.std(), ys.std(), 0.0, 1.0)
    x0, y0, x1, y1 = R.crop_box(g6, m.shape[1], m.shape[0])
    d = bfs_distance(m[y0 : y1 + 1, x0 : x1 + 1])
    n = (2000,) * 7
    out = {}
    for backend in S.BACKENDS:
        lab, crd = S.sample_mask_pixels(m, g6, n, seed=9, backend=backend)
        bx = np.rint(crd[:, 0] * 128 + m.shape[1] / 2).astype(int) - x0
        by = np.rint(crd[:, 1] * 128 + m.shape[0] / 2).astype(int) - y0
        out[backend] = d[by, bx].reshape(7, 2000)
    for g in range(7):
        a, b = out["c"][g], out["numpy"][g]
        assert abs(a.mean() - b.mean()) < 0.1 * max(b.mean(), 1) + 0.3


def test_mask_deterministic_and_bool_input():
    m = blob(seed=3)
    ys, xs = np.nonzero(m)
    g6 = (xs.mean(), ys.mean(), xs.std(), ys.std(), 0.0, 1.0)
    a = S.sample_mask_pixels(m, g6, seed=4)
    b = S.sample_mask_pixels(m.astype(bool), g6, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (2048,)
