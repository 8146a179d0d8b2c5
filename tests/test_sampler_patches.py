"""Fovea patch sampler: allocation, placement/extraction parity C vs NumPy, overlap rule, determinism, threads."""
import threading

import numpy as np
import pytest

from flip import sampler as S
from flip.sampler import reference as R

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")

SIZES = (1, 2, 4, 8, 16)


def rand_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- allocation (docs/flip.md §3.2)
@pytest.mark.parametrize(
    "sigma, expected",
    [(1, (18, 4, 1, 0, 0)), (3, (162, 40, 10, 2, 0)), (10, (0, 364, 113, 28, 7)), (30, (0, 0, 195, 254, 63)), (100, (0, 0, 0, 0, 512))],
)
def test_allocation_matches_spec_examples(sigma, expected):
    for backend in S.BACKENDS:
        assert S.allocate_counts(sigma, sigma, 512, SIZES, 1.44, backend=backend) == expected


def test_allocation_c_equals_numpy_on_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        s1, s2 = np.exp(rng.uniform(-3, 6, 2))
        n = int(rng.integers(0, 3000))
        c = float(rng.uniform(0.05, 3))
        sizes = tuple(int(s) for s in rng.choice([1, 2, 3, 4, 6, 8, 12, 16, 32], size=int(rng.integers(1, 6)), replace=False))
        shape = None if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(3, 60, 2))
        a = S.allocate_counts(s1, s2, n, sizes, c, shape, backend="c")
        b = S.allocate_counts(s1, s2, n, sizes, c, shape, backend="numpy")
        assert a == b
        assert sum(a) <= n


def test_allocation_skips_sizes_that_do_not_fit():
    counts = S.allocate_counts(100, 100, 512, SIZES, 1.44, image_shape=(9, 40))
    assert counts[3] == 0 and counts[4] == 0  # p < H − 1 fails for 8 and 16 when H = 9
    assert sum(counts) == 512  # the budget flows to the sizes that fit
    ps = S.sample_patches(rand_image(9, 40), (20, 4, 100, 100, 0, 1), 512, SIZES, 2.67, 1.44, seed=0)
    assert ps.counts[3] == 0 and ps.counts[4] == 0 and ps.total > 0


def test_allocation_is_coarse_first_and_widened():
    # widen=False with √2·σ gives the same counts as the default widening
    assert S.allocate_counts(10, 20, widen=True) == S.allocate_counts(10 * 2**0.5, 20 * 2**0.5, widen=False)
    # a big object gets only coarse patches
    assert S.allocate_counts(300, 300)[:4] == (0, 0, 0, 0)


# ---------------------------------------------------------------- placement given candidates (§3.3)
def candidate_stream(rng, g6, counts, w, h):
    g = R.sampling_gaussian(g6, w, h)
    return [R.draw_gaussian(g, 10 * n, rng) for n in counts]


@pytest.mark.parametrize("tau", [0.0, 0.5, 2.67])
@pytest.mark.parametrize("sigma", [2.0, 6.0, 15.0])
def test_place_c_equals_numpy_on_same_candidates(tau, sigma):
    rng = np.random.default_rng(int(sigma * 10 + tau * 100))
    h, w = 90, 120
    img = rand_image(h, w, 3)
    g6 = (60.3, 44.7, sigma, 1.7 * sigma, 0.4, 0.9)
    counts = S.allocate_counts(g6[2], g6[3], 512, SIZES, 1.44, (h, w))
    cands = candidate_stream(rng, g6, counts, w, h)
    pc, cc = S.place_patches(img, SIZES, counts, cands, tau, backend="c")
    pn, cn = S.place_patches(img, SIZES, counts, cands, tau, backend="numpy")
    assert pc.counts == pn.counts
    for i in range(len(SIZES)):
        np.testing.assert_array_equal(cc[i], cn[i])  # same accepted centres
        np.testing.assert_allclose(pc.coords[i], pn.coords[i], rtol=0, atol=1e-6)
        diff = np.abs(pc.patches[i].astype(int) - pn.patches[i].astype(int))
        assert diff.max(initial=0) <= 1  # float rounding only


def test_extraction_exact_on_integer_and_half_centres():
    img = rand_image(40, 40, 5)
    # samples at cx − p/2 + 0.5 + xi: even p with a half-integer centre hits pixel positions exactly
    pc, _ = S.place_patches(img, (4,), (1,), [np.array([[19.5, 9.5]])], 0.0)
    np.testing.assert_array_equal(pc.patches[0][0], img[8:12, 18:22])
    # odd p with an integer centre as well
    pc, _ = S.place_patches(img, (3,), (1,), [np.array([[10.0, 20.0]])], 0.0)
    np.testing.assert_array_equal(pc.patches[0][0], img[19:22, 9:12])
    # halfway between two pixels: the mean, rounded half up
    two = np.zeros((5, 6, 3), np.uint8)
    two[:, :2] = 10
    two[:, 2:] = 21
    pc, _ = S.place_patches(two, (1,), (1,), [np.array([[1.5, 2.0]])], 0.0)
    assert pc.patches[0][0, 0, 0, 0] == 16  # 15.5 → 16
    assert pc.coords[0][0].tolist() == pytest.approx([1.5 / 128 - 6 / 256, 2.0 / 128 - 5 / 256])


def test_border_rule():
    img = rand_image(20, 30)
    p = 4
    cands = np.array([[2.0, 10.0], [1.99, 10.0], [26.99, 10.0], [27.0, 10.0], [10.0, 2.0], [10.0, 16.99], [10.0, 17.0]])
    for backend in S.BACKENDS:
        _, centres = S.place_patches(img, (p,), (7,), [cands], 10.0, backend=backend)
        # x − p/2 ≥ 0 and x + p/2 < W − 1 (= 29), same for y with H − 1 = 19
        assert centres[0].tolist() == [[2.0, 10.0], [26.99, 10.0], [10.0, 2.0], [10.0, 16.99]]


def test_overlap_intended_semantics():
    img = rand_image(64, 64)
    # one 8×8 box, then candidates overlapping it by 0, 8 (touching), 16 and 32 px²
    first = [50.0, 50.0]
    tests = [
        ([54.0, 50.0], 0.5, True),  # 4×8 = 32 px² = 0.5·64: not > τp² ⇒ accepted
        ([54.0, 50.0], 0.49, False),
        ([58.0, 50.0], 0.0, True),  # touching edge
        ([57.9, 50.0], 0.0, False),  # 0.1×8 real overlap with τ = 0
    ]
    for centre, tau, ok in tests:
        for backend in S.BACKENDS:
            ps, _ = S.place_patches(img, (8,), (2,), [np.array([first, centre])], tau, backend=backend)
            assert ps.counts[0] == (2 if ok else 1), (centre, tau, backend)
    # sums over several boxes, each counted once: two accepted 4×4 at distance, a 4×4 candidate overlapping each by 4 px²
    cands = np.array([[10.0, 10.0], [16.0, 10.0], [13.0, 10.0]])
    for backend in S.BACKENDS:
        got = S.place_patches(img, (4,), (3,), [cands], 0.5, backend=backend)[0].counts[0]  # 8 px² = 0.5·16: accept
        assert got == 3
        got = S.place_patches(img, (4,), (3,), [cands], 0.49, backend=backend)[0].counts[0]
        assert got == 2


def overlap_sums(centres_by_size, sizes):
    """For every accepted box (in placement order), the intersection area with all earlier boxes."""
    boxes = []
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    out = []
    for i in order:
        p = sizes[i]
        for cx, cy in centres_by_size[i]:
            b = (cx - p / 2, cy - p / 2, cx + p / 2, cy + p / 2)
            s = 0.0
            for q in boxes:
                ix = min(b[2], q[2]) - max(b[0], q[0])
                iy = min(b[3], q[3]) - max(b[1], q[1])
                if ix > 1e-6 and iy > 1e-6:
                    s += ix * iy
            out.append((s, p))
            boxes.append(b)
    return out


def test_overlap_invariant_in_full_sampler():
    img = rand_image(128, 128, 9)
    for tau in (0.0, 0.3, 2.67):
        g6 = (64, 64, 6, 9, 0.2, 0.98)
        counts = S.allocate_counts(6, 9, 512, SIZES, 1.44, (128, 128))
        cands = candidate_stream(np.random.default_rng(2), g6, counts, 128, 128)
        _, centres = S.place_patches(img, SIZES, counts, cands, tau)
        for s, p in overlap_sums(centres, SIZES):
            assert s <= tau * p * p + 1e-9


# ---------------------------------------------------------------- full sampler: determinism, seeds, threads
def test_same_seed_same_output_and_different_seed_differs():
    img = rand_image(300, 400)
    g = (200.0, 150.0, 12.0, 20.0, 0.3, 0.95)
    a = S.sample_patches(img, g, seed=7)
    b = S.sample_patches(img, g, seed=7)
    c = S.sample_patches(img, g, seed=8)
    assert a.counts == b.counts
    for x, y in zip(a.patches + a.coords, b.patches + b.coords):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a.coords, c.coords))


def test_threads_give_the_same_results_as_serial():
    img = rand_image(256, 256)
    gs = [(128.0 + i, 120.0, 3.0 + i, 5.0 + 2 * i, 0.1 * i, 1.0) for i in range(8)]
    serial = [S.sample_patches(img, g, seed=i) for i, g in enumerate(gs)]
    results = [None] * len(gs)

    def work(i):
        for _ in range(5):
            results[i] = S.sample_patches(img, gs[i], seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(gs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, r in zip(serial, results):
        assert s.counts == r.counts
        for x, y in zip(s.coords, r.coords):
            np.testing.assert_array_equal(x, y)


def test_many_equals_single_calls():
    img = rand_image(200, 200)
    gs = np.array([[100, 100, 4, 6, 0, 1], [50, 60, 10, 10, 0.6, 0.8], [100, 100, 2, 2, 1, 0]], float)
    many = S.sample_patches_many(img, gs, seeds=[5, 6, 7])
    for j, ps in enumerate(many):
        one = S.sample_patches(img, gs[j], seed=[5, 6, 7][j])
        assert ps.counts == one.counts
        for x, y in zip(ps.patches, one.patches):
            np.testing.assert_array_equal(x, y)
    bad = gs.copy()
    bad[1, 2] = np.nan
    out = S.sample_patches_many(img, bad, seeds=[5, 6, 7], errors="return")
    assert isinstance(out[1], S.SamplerError) and "object 1" in str(out[1])
    assert out[0].counts == many[0].counts
    with pytest.raises(S.SamplerError, match="object 1"):
        S.sample_patches_many(img, bad, seeds=[5, 6, 7])


def test_drawn_tau_and_coverage():
    img = rand_image(100, 100)
    ps = S.sample_patches(img, (50, 50, 5, 5, 0, 1), tau=None, coverage=None, seed=3)
    assert 0 <= ps.tau < 4 and 0.1 <= ps.coverage < 2
    again = S.sample_patches(img, (50, 50, 5, 5, 0, 1), tau=None, coverage=None, seed=3)
    assert (ps.tau, ps.coverage) == (again.tau, again.coverage)


def test_output_shapes_and_target_indices():
    img = rand_image(120, 160)
    for backend in S.BACKENDS:
        ps = S.sample_patches(img, (80, 60, 5, 7, 0.3, 0.9), 300, SIZES, 2.67, 1.44, seed=1, backend=backend)
        assert ps.sizes == SIZES
        for p, arr, crd, n in zip(ps.sizes, ps.patches, ps.coords, ps.counts):
            assert arr.shape == (n, p, p, 3) and arr.dtype == np.uint8
            assert crd.shape == (n, 2) and crd.dtype == np.float32
        idx = np.concatenate(ps.target_indices())
        np.testing.assert_array_equal(idx, np.arange(ps.total))
        assert ps.total <= 300
