"""compat="authors": the authors' patch sampler reproduced bit for bit (docs/sampler.md).

Against the measured reference in $FLIP_REFERENCE_DIR/authors-sampler (marked `reference`, tests/reference.py):
  - the 42 golden cases: patches and coords bit for bit, C and the NumPy twin;
  - the 264 count cases: with the reference's own seeds (1…100) the per-size mean and std reproduce the stored
    numbers; with fresh seeds every case matches per size within 4 combined standard errors + 0.3.
Without the reference: the NumPy twin equals C bit for bit on random cases, the RNG streams agree, and the
rounding-sensitive extraction path agrees on crafted centres.
"""
import json

import numpy as np
import pytest

from flip import sampler as S
from flip.sampler import authors as A

from . import reference

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")

REF = reference.sampler_dir()  # None when absent or hidden
SIZES = (1, 2, 4, 8, 16)
needs_ref = pytest.mark.reference("sampler")


def _cases():
    if REF is None or not (REF / "counts.json").is_file():
        return []
    return json.loads((REF / "counts.json").read_text())


CASES = _cases()
GOLDEN = [c for c in CASES if "golden_seed" in c]


@pytest.fixture(scope="module")
def golden():
    return np.load(REF / "golden.npz")


@pytest.fixture(scope="module")
def images(golden):
    out = {(512, 512): golden["image_512x512"], (768, 1024): golden["image_768x1024"]}
    out[(3000, 4000)] = np.zeros((3000, 4000, 3), np.uint8)  # README: the large cases used an all-zero image
    return out


def _g(case):
    return S.authors_gaussian_px(case["pos_rot"], case["W"], case["H"])


def _counts(img, case, seeds):
    g = _g(case)
    return np.array([S.sample_patches(img, g, case["num_tokens"], SIZES, case["tau"], case["coverage"], seed=s,
                                      compat="authors").counts for s in seeds], np.float64)


def _assert_same(a: S.PatchSet, b: S.PatchSet, what=""):
    assert a.counts == b.counts, what
    assert (a.tau, a.coverage) == (b.tau, b.coverage), what
    for p, x, y in zip(a.sizes, a.patches, b.patches):
        assert x.dtype == y.dtype == np.uint8 and np.array_equal(x, y), f"{what} patches p={p}"
    for p, x, y in zip(a.sizes, a.coords, b.coords):
        assert x.dtype == y.dtype == np.float32 and np.array_equal(x, y), f"{what} coords p={p}"


# ------------------------------------------------------------------ against the reference
@needs_ref
@pytest.mark.parametrize("backend", S.BACKENDS)
def test_golden_cases_bit_exact(golden, backend):
    assert len(GOLDEN) == 42
    for case in GOLDEN:
        img = golden[f"image_{case['H']}x{case['W']}"]
        ps = S.sample_patches(img, _g(case), case["num_tokens"], SIZES, case["tau"], case["coverage"],
                              seed=case["golden_seed"], backend=backend, compat="authors")
        for i, p in enumerate(SIZES):
            want_p = golden[f"case{case['case']}_patches_p{p}"]
            want_c = golden[f"case{case['case']}_coords_p{p}"]
            assert ps.patches[i].shape == want_p.shape, (case["case"], p)
            assert np.array_equal(ps.patches[i], want_p), (case["case"], p)
            assert np.array_equal(ps.coords[i], want_c), (case["case"], p)
        assert (ps.tau, ps.coverage) == (float(np.float32(case["tau"])), float(np.float32(case["coverage"])))


@needs_ref
def test_counts_reproduce_the_reference_with_its_seeds(images):
    """Seeds 1…100 as in make_reference.py: the stored mean and std (3 decimals) come out exactly, every case."""
    assert len(CASES) == 264
    for case in CASES:
        c = _counts(images[(case["H"], case["W"])], case, range(1, 101))
        np.testing.assert_allclose(c.mean(0), case["mean_counts"], atol=6e-4, rtol=0, err_msg=f"case {case['case']}")
        np.testing.assert_allclose(c.std(0), case["std_counts"], atol=6e-4, rtol=0, err_msg=f"case {case['case']}")


def _check_fresh(images, n_seeds):
    bad = []
    for case in CASES:
        c = _counts(images[(case["H"], case["W"])], case, range(10_001, 10_001 + n_seeds))
        ref_m, ref_s = np.array(case["mean_counts"]), np.array(case["std_counts"])
        se = np.sqrt(c.var(0) / n_seeds + ref_s**2 / 100)
        off = np.abs(c.mean(0) - ref_m) > 4 * se + 0.3
        if off.any():
            bad.append((case["case"], c.mean(0).round(2).tolist(), case["mean_counts"]))
    assert not bad, f"cases off by more than 4 combined SE + 0.3: {bad[:5]}"


@needs_ref
def test_counts_match_with_fresh_seeds(images):
    """Every case, 20 seeds never used by the reference: a statistical match, not a replay."""
    _check_fresh(images, 20)


@needs_ref
@pytest.mark.slow
def test_counts_match_with_many_fresh_seeds(images):
    _check_fresh(images, 300)


@needs_ref
def test_exact_mode_keeps_more_coarse_patches(images):
    """The issue's table: σ = 5 px, τ = 2.67 — the spatial hash keeps far fewer 4/8/16 patches than docs/flip.md §3.5."""
    case = next(c for c in CASES if c["H"] == 512 and c["sigma_px"] == 5 and c["aspect"] == 1 and c["tau"] == 2.67)
    img, g = images[(512, 512)], _g(case)
    ex = np.mean([S.sample_patches(img, g, 512, SIZES, 2.67, 1.44, seed=s, compat="exact").counts for s in range(30)], 0)
    au = np.mean([S.sample_patches(img, g, 512, SIZES, 2.67, 1.44, seed=s, compat="authors").counts for s in range(30)], 0)
    assert abs(ex[0] - au[0]) < 1 and ex[2] > 2 * au[2] and ex[3] > 3 * au[3]


# ------------------------------------------------------------------ C == NumPy twin, without the reference
def _random_cases(n, rng):
    for k in range(n):
        h, w = (int(v) for v in rng.integers(3, 300, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        sigma = float(np.exp(rng.uniform(np.log(0.3), np.log(max(w, h) / 2))))
        ang = rng.uniform(0, np.pi)
        g = (rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h, sigma, sigma / rng.uniform(1, 4), -np.sin(ang), np.cos(ang))
        sizes = tuple(int(p) for p in rng.permutation([1, 2, 4, 8, 16])[: rng.integers(1, 6)])
        if k % 3:
            sizes = tuple(sorted(sizes))
        tau = None if k % 5 == 0 else float(rng.choice([0.0, 0.5, 1.0, 2.67, 4.0]))
        cov = None if k % 7 == 0 else float(rng.uniform(0.1, 2.0))
        yield img, g, int(rng.integers(0, 600)), sizes, tau, cov, int(rng.integers(0, 2**32))


def test_numpy_twin_equals_c_bit_for_bit():
    rng = np.random.default_rng(20261130)
    for k, (img, g, n, sizes, tau, cov, seed) in enumerate(_random_cases(60, rng)):
        try:
            a = S.sample_patches(img, g, n, sizes, tau, cov, seed=seed, compat="authors")
        except S.SamplerError as err:  # e.g. a mean far outside: both backends must refuse it alike
            with pytest.raises(S.SamplerError):
                S.sample_patches(img, g, n, sizes, tau, cov, seed=seed, compat="authors", backend="numpy")
            assert "outside" in str(err)
            continue
        b = S.sample_patches(img, g, n, sizes, tau, cov, seed=seed, compat="authors", backend="numpy")
        _assert_same(a, b, f"random case {k}")


def test_many_equals_single_calls_in_both_backends():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    gs = np.array([(120, 100, s, s / 2, 0.3, 0.9) for s in (1.0, 4.0, 12.0)])
    seeds = [5, 2**32 - 1, 123456789]
    for backend in S.BACKENDS:
        many = S.sample_patches_many(img, gs, 256, SIZES, 2.67, 1.44, seeds, backend=backend, compat="authors")
        for g, s, m in zip(gs, seeds, many):
            _assert_same(m, S.sample_patches(img, g, 256, SIZES, 2.67, 1.44, seed=s, compat="authors"), backend)


def test_rng_streams_agree():
    for seed in (0, 1, 7, 2**31, 2**32 - 1):
        rng = A.KissRng(seed)
        assert np.array_equal(S._fovea.authors_rng(seed, 2000, "kiss"), np.array([rng.kiss() for _ in range(2000)], np.uint32))
        rng = A.KissRng(seed)
        assert np.array_equal(S._fovea.authors_rng(seed, 500, "uniform"), np.array([rng.uniform() for _ in range(500)], np.float32))
    # enough normals that the wedge and tail branches run (~1 % of draws)
    rng = A.KissRng(11)
    c = S._fovea.authors_rng(11, 20000, "normal")
    assert np.array_equal(c, np.array([rng.normal() for _ in range(20000)], np.float32))
    assert np.abs(c).max() > 3.5 and abs(c.mean()) < 0.03 and abs(c.std() - 1) < 0.02


def test_initialize_ziggurat_seeding():
    """README: zigset(s ^ 0xCAFEBABE, s·69069 + 1234567, s·1664525 + 1013904223, s·18000 + 987654321) mod 2³²."""
    s = 3_000_000_000
    r = A.KissRng(s)
    assert (r.jsr, r.jcong, r.w, r.z) == ((s ^ 0xCAFEBABE) % 2**32, (s * 69069 + 1234567) % 2**32,
                                          (s * 1664525 + 1013904223) % 2**32, (s * 18000 + 987654321) % 2**32)


def test_extraction_where_float_rounding_breaks_pixel_contiguity():
    """Centres just below a power of two: cx + offset rounds up across the binade and two columns share a base
    pixel, which sends C down its scalar path. Both paths must equal the twin."""
    img = np.random.default_rng(1).integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    cs = [(np.float32(b) - np.float32(k / 2) - np.spacing(np.float32(b - 1)), np.float32(300.25 + k / 7))
          for b in (256, 512, 1024) for k in range(1, 40)]
    cs = np.array(cs, np.float32)
    off = np.arange(16, dtype=np.float32) - np.float32(8) + np.float32(0.5)
    broken = sum(not np.all(np.diff((c + off).astype(int)) == 1) for c in cs[:, 0])
    assert broken > 5  # the crafted centres really exercise the scalar path
    for p in (1, 3, 16):
        want = A.extract_patches(img, [tuple(map(float, c)) for c in cs], p)
        assert np.array_equal(S._fovea.authors_extract(img, cs, p), want)
    with pytest.raises(S.SamplerError, match="leaves"):
        S._fovea.authors_extract(img, np.array([[0.2, 50]], np.float32), 1)


def test_authors_gaussian_px_reaches_their_float32_gaussian():
    rot = np.array([-0.1, 0.1, 0.0023187366, 0.0065806475, 0.70220727, 0.7119726], np.float32)
    g = S.authors_gaussian_px(rot, 1024, 768)
    mx, my, s1, s2, a, b = A.sampling_gaussian(g)
    f = np.float32
    assert mx == (rot[0] + f(1)) * f(1024) / f(2) and my == (rot[1] + f(1)) * f(768) / f(2)
    assert s1 == rot[2] * f(np.sqrt(2)) * f(1024) / f(2) and s2 == rot[3] * f(np.sqrt(2)) * f(768) / f(2)
    # and it is the float64 per-axis pixel Gaussian up to float32 rounding
    r = rot.astype(np.float64)
    assert np.allclose(g, [(r[0] + 1) * 512, (r[1] + 1) * 384, r[2] * 512, r[3] * 384, r[4], r[5]], rtol=1e-6)


# ------------------------------------------------------------------ behaviour and input checks
def test_same_seed_same_output_and_threads():
    from concurrent.futures import ThreadPoolExecutor

    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    g = (128.0, 128.0, 20.0, 20.0, 0.0, 1.0)
    one = [S.sample_patches(img, g, 512, seed=s, compat="authors") for s in range(8)]
    with ThreadPoolExecutor(2) as pool:
        two = list(pool.map(lambda s: S.sample_patches(img, g, 512, seed=s, compat="authors"), range(8)))
    for a, b in zip(one, two):
        _assert_same(a, b)
    assert one[0].counts != one[1].counts or not np.array_equal(one[0].coords[3], one[1].coords[3])


def test_tau_zero_agrees_with_exact_rule_counts():
    """At τ = 0 both rules reject any real overlap: the mean counts per size agree (the issue's observation)."""
    img = np.zeros((512, 512, 3), np.uint8)
    g = (256.0, 256.0, 8.0, 8.0, 0.0, 1.0)
    ex = np.mean([S.sample_patches(img, g, 512, SIZES, 0.0, 1.0, seed=s, compat="exact").counts for s in range(60)], 0)
    au = np.mean([S.sample_patches(img, g, 512, SIZES, 0.0, 1.0, seed=s, compat="authors").counts for s in range(60)], 0)
    assert np.all(np.abs(ex - au) <= 0.15 * np.maximum(ex, 1) + 1), (ex, au)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_authors_mode_input_errors(backend):
    img = np.zeros((64, 64, 3), np.uint8)
    g = (32.0, 32.0, 4.0, 4.0, 0.0, 1.0)
    with pytest.raises(S.SamplerError, match="2\\*\\*32"):
        S.sample_patches(img, g, seed=2**32, backend=backend, compat="authors")
    with pytest.raises(S.SamplerError, match="1e30"):
        S.sample_patches(img, g, tau=1e31, backend=backend, compat="authors")
    with pytest.raises(S.SamplerError, match="NaN"):
        S.sample_patches(img, (np.nan, 32, 4, 4, 0, 1), backend=backend, compat="authors")
    with pytest.raises(S.SamplerError, match="outside"):
        S.sample_patches(img, (-1000, 32, 4, 4, 0, 1), backend=backend, compat="authors")
    with pytest.raises(ValueError, match="compat"):
        S.sample_patches(img, g, backend=backend, compat="approximate")


def test_c_module_requires_and_checks_compat():
    img = np.zeros((64, 64, 3), np.uint8)
    g = (32.0, 32.0, 4.0, 4.0, 0.0, 1.0)
    F = S._fovea
    with pytest.raises(S.SamplerError, match="compat must be given"):
        F.sample_patches(img, g, 512, SIZES, 1.0, 1.0, 0)
    with pytest.raises(S.SamplerError, match="unknown compat"):
        F.sample_patches(img, g, 512, SIZES, 1.0, 1.0, 0, "fast")
    with pytest.raises(S.SamplerError, match="string"):
        F.sample_patches_many(img, np.array([g]), 512, SIZES, 1.0, 1.0, np.zeros(1, np.uint64), 1)
    with pytest.raises(S.SamplerError, match="2\\*\\*32"):
        F.sample_patches(img, g, 512, SIZES, 1.0, 1.0, 2**40, "authors")
    out = F.sample_patches_many(img, np.array([g, (np.nan,) * 6]), 512, SIZES, 1.0, 1.0, np.array([1, 2**33], np.uint64), "authors")
    assert isinstance(out[0], tuple) and isinstance(out[1], S.SamplerError)


def test_sizes_that_cannot_fit_keep_their_budget_as_the_authors_do():
    """Unlike "exact", the authors' allocation does not drop sizes larger than the image: their share is lost."""
    img = np.full((8, 8, 3), 9, np.uint8)  # p = 8 cannot fit (1-px margin), p = 4 can
    g = (4.0, 4.0, 3.0, 3.0, 0.0, 1.0)
    want = A.allocate(*A.sampling_gaussian(g)[2:4], 20, SIZES, 1.0)
    assert want[3] >= 1 and sum(want) == 20  # budget reserved for 8×8 patches
    assert S.allocate_counts(3.0, 3.0, 20, SIZES, 1.0, image_shape=(8, 8))[3] == 0  # "exact" gives it to finer sizes
    for backend in S.BACKENDS:
        au = S.sample_patches(img, g, 20, SIZES, 1.0, 1.0, seed=1, backend=backend, compat="authors")
        assert au.counts[3] == au.counts[4] == 0 and au.total <= 20 - want[3]
        assert all((p == 9).all() for p in au.patches)


def test_authors_position_in_c_equals_the_numpy_chain_bit_for_bit():
    """flip.sampler.authors_position (one C call) == authors_rot_from_rho + authors_gaussian_px (NumPy float32), on
    ordinary, tiny, huge, degenerate and overflowing Gaussians and odd image sizes."""
    rng = np.random.default_rng(11)
    cases = [np.array([0.0, 0.0, 1.0, 1.0, 0.0]), np.zeros(5), np.array([0.5, -0.5, 4e-6, 4e-6, -4e-6]),
             np.array([0.0, 0.0, 1e30, 1e30, 1e30]), np.array([0.1, 0.2, 1e-3, 0.0, 0.0])]
    for i in range(20000):
        k = i % 3
        if k == 0:
            r = np.concatenate([rng.uniform(-1, 1, 2), 10 ** rng.uniform(-12, 2, 2), rng.normal(0, 1, 1) * 10 ** rng.uniform(-12, 2)])
        elif k == 1:
            r = np.concatenate([rng.uniform(-1, 1, 2), rng.uniform(0, 1e-3, 2), rng.normal(0, 1e-4, 1)])
        else:
            r = rng.normal(0, 1, 5) * 10 ** rng.uniform(-40, 40, 5)
        cases.append(r)
    with np.errstate(all="ignore"):
        for r in cases:
            w, h = (int(v) for v in rng.integers(1, 6000, 2))
            rot, g = S.authors_position(r, w, h)
            rot0 = S.authors_rot_from_rho(r)
            g0 = S.authors_gaussian_px(rot0, w, h)
            assert rot.dtype == np.float32 and np.array_equal(rot.view(np.uint32), rot0.view(np.uint32)), r
            assert np.array_equal(g, g0, equal_nan=True), r
