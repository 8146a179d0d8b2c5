"""Random draws of the two backends agree in distribution: candidate centres, token counts, augmentation."""
import math

import numpy as np
import pytest

from flip import sampler as S
from flip.sampler import reference as R

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")


def ks_stat(a, b):
    a, b = np.sort(a), np.sort(b)
    allv = np.concatenate([a, b])
    return np.max(np.abs(np.searchsorted(a, allv, "right") / len(a) - np.searchsorted(b, allv, "right") / len(b)))


def assert_same_distribution(a, b, alpha_c=1.95):  # c(α) for α = 0.001
    n, m = len(a), len(b)
    d = ks_stat(np.asarray(a, float), np.asarray(b, float))
    assert d < alpha_c * math.sqrt((n + m) / (n * m)), f"KS D = {d:.4f}"


def test_gaussian_candidates_c_vs_numpy_and_theory():
    g6 = (40.0, -10.0, 3.0, 7.0, 0.6, 0.8)
    c = S._fovea.draw_gaussian(g6, 40000, 11)
    n = R.draw_gaussian(R.sampling_gaussian(g6), 40000, np.random.default_rng(11))
    for k in range(2):
        assert_same_distribution(c[:, k], n[:, k])
    # covariance = 2·(s1² u1u1ᵀ + s2² u2u2ᵀ), u1 = (−a, b), u2 = (−b, −a) (docs/flip.md §3.9)
    a, b = g6[4], g6[5]
    u1, u2 = np.array([-a, b]), np.array([-b, -a])
    cov = 2 * (g6[2] ** 2 * np.outer(u1, u1) + g6[3] ** 2 * np.outer(u2, u2))
    for x in (c, n):
        np.testing.assert_allclose(x.mean(0), g6[:2], atol=0.15)
        np.testing.assert_allclose(np.cov(x.T), cov, rtol=0.04, atol=1.0)


def test_accepted_centres_same_distribution():
    img = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    g6 = (80.0, 80.0, 4.0, 6.0, 0.3, 0.95)
    xs = {"c": [], "numpy": []}
    for backend in S.BACKENDS:
        for seed in range(30):
            ps = S.sample_patches(img, g6, 512, (1, 2, 4), 1.0, 1.0, seed=seed, backend=backend)
            xs[backend].append(ps.coords[0])
    c, n = np.concatenate(xs["c"]), np.concatenate(xs["numpy"])
    assert abs(len(c) - len(n)) < 0.05 * len(c)
    for k in range(2):
        assert_same_distribution(c[:, k], n[:, k])


def test_num_tokens_beta_distribution():
    c = np.array([S.sample_num_tokens(s) for s in range(4000)])
    n = np.array([S.sample_num_tokens(s, backend="numpy") for s in range(4000)])
    assert c.min() >= 32 and c.max() <= 2048
    # Beta(2, β) with β = 2(1/m − 1), m = 480/2016: mean = 32 + 2016·m = 512
    assert abs(c.mean() - 512) < 10 and abs(n.mean() - 512) < 10
    m = 480 / 2016
    beta = 2 * (1 / m - 1)
    var = 2 * beta / ((2 + beta) ** 2 * (3 + beta)) * 2016**2
    assert abs(c.std() - math.sqrt(var)) < 0.06 * math.sqrt(var)
    assert_same_distribution(c, n)
    # other ranges are accepted and respected
    v = [S.sample_num_tokens(s, 10, 20, 12) for s in range(200)]
    assert min(v) >= 10 and max(v) <= 20


def test_augmentation_statistics_and_parity():
    rot = np.array([0.1, -0.2, 0.05, 0.2, 0.6, 0.8])
    c = np.array([S.augment_position(rot, s) for s in range(3000)])
    n = np.array([S.augment_position(rot, s, backend="numpy") for s in range(3000)])
    for k in range(6):
        assert_same_distribution(c[:, k], n[:, k])
    # rotation at most 20°·minor/major; (a, b) stays unit length
    ang = np.degrees(np.arctan2(c[:, 5], c[:, 4]) - np.arctan2(rot[5], rot[4]))
    assert np.abs(ang).max() <= 20 * 0.05 / 0.2 + 1e-9
    np.testing.assert_allclose(np.hypot(c[:, 4], c[:, 5]), 1, atol=1e-12)
    # σ noise ±30 % at most, then the isotropic blend only grows σ: bounds
    f = (2 / 36) * 0.05 / 0.2
    al = 1 - math.exp(-f)
    lo = (1 - al) * 0.7 * rot[2] + al * math.hypot(0.7 * rot[2], 0.7 * rot[3])
    assert c[:, 2].min() >= lo - 1e-12
    # shift has std 0.1σ along each axis: total shift variance 0.01(s1² + s2²)
    shift = c[:, :2] - rot[:2]
    assert abs(shift.var(0).sum() / (0.01 * (rot[2] ** 2 + rot[3] ** 2)) - 1) < 0.1
    # isotropic object: σ inflated by ≈ 2.2 % on average (docs/flip.md §6.2)
    iso = np.array([S.augment_position([0, 0, 0.1, 0.1, 0, 1], s) for s in range(3000)])
    assert abs(iso[:, 2].mean() / 0.1 - 1.022) < 0.01


def test_augmentation_deterministic():
    rot = [0.1, -0.2, 0.05, 0.2, 0.6, 0.8]
    np.testing.assert_array_equal(S.augment_position(rot, 5), S.augment_position(rot, 5))
    assert not np.array_equal(S.augment_position(rot, 5), S.augment_position(rot, 6))
