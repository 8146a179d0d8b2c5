"""Bad input raises SamplerError with a clear message, in both backends and in the C module called directly."""
import numpy as np
import pytest

from flip import sampler as S

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")

IMG = np.zeros((64, 64, 3), np.uint8)
G = (32.0, 32.0, 4.0, 4.0, 0.0, 1.0)
SIZES = (1, 2, 4, 8, 16)

BAD_IMAGES = [
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), "grayscale"),
    (np.zeros((64, 64, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((64, 64, 3), np.uint8)[:, ::2], "C-contiguous"),
    (np.zeros((0, 0, 3), np.uint8), "3x3"),
    (np.zeros((1, 1, 3), np.uint8), "3x3"),
    (np.zeros((2, 50, 3), np.uint8), "3x3"),
    ([[1, 2, 3]], "numpy"),
]

BAD_GAUSSIANS = [
    ((np.nan, 32, 4, 4, 0, 1), "NaN"),
    ((32, 32, np.inf, 4, 0, 1), "NaN or inf"),
    ((32, 32, 0, 4, 0, 1), "> 0"),
    ((32, 32, 4, -1, 0, 1), "> 0"),
    ((32, 32, 4, 4, 0, 0), "direction"),
    ((-1000, 32, 4, 4, 0, 1), "outside"),
    ((32, 5000, 4, 4, 0, 1), "outside"),
    ((32, 32, 4, 4, 0), "6 numbers"),
    ((32, 32, 1e12, 4, 0, 1), "too large"),
]


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("image, msg", BAD_IMAGES)
def test_bad_images(backend, image, msg):
    with pytest.raises(S.SamplerError, match=msg):
        S.sample_patches(image, G, seed=0, backend=backend)


@pytest.mark.parametrize("image, msg", BAD_IMAGES)
def test_bad_images_in_c_directly(image, msg):
    with pytest.raises(S.SamplerError, match=msg):
        S._fovea.sample_patches(image, G, 512, SIZES, 1.0, 1.0, 0, "exact")


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("g, msg", BAD_GAUSSIANS)
def test_bad_gaussians(backend, g, msg):
    with pytest.raises(S.SamplerError, match=msg):
        S.sample_patches(IMG, g, seed=0, backend=backend)


@pytest.mark.parametrize("g, msg", BAD_GAUSSIANS)
def test_bad_gaussians_in_c_directly(g, msg):
    with pytest.raises(S.SamplerError, match=msg):
        S._fovea.sample_patches(IMG, g, 512, SIZES, 1.0, 1.0, 0, "exact")


def test_far_rule_boundary():
    # 5 widened stds outside is still fine, just beyond is an error
    far = 5 * 4 * 2**0.5
    S.sample_patches(IMG, (-far + 1e-6, 32, 4, 4, 0, 1), seed=0)
    with pytest.raises(S.SamplerError, match="outside"):
        S.sample_patches(IMG, (-far - 1e-3, 32, 4, 4, 0, 1), seed=0)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_bad_parameters(backend):
    cases = [
        (dict(num_tokens=-1), "num_tokens"),
        (dict(num_tokens=10**8), "num_tokens"),
        (dict(patch_sizes=(1, 1)), "twice"),
        (dict(patch_sizes=(0, 2)), "range"),
        (dict(patch_sizes=(1.5,)), "integer"),
        (dict(patch_sizes=()), "entries"),
        (dict(patch_sizes=tuple(range(1, 20))), "entries"),
        (dict(tau=-1.0), "tau"),
        (dict(tau=float("nan")), "tau"),
        (dict(coverage=0.0), "coverage"),
        (dict(coverage=float("inf")), "coverage"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**64), "seed"),
        (dict(seed=1.5), "seed"),
    ]
    for kw, msg in cases:
        args = dict(num_tokens=512, patch_sizes=SIZES, tau=1.0, coverage=1.0, seed=0)
        args.update(kw)
        with pytest.raises(S.SamplerError, match=msg):
            S.sample_patches(IMG, G, backend=backend, **args)


def test_bad_parameters_in_c_directly():
    F = S._fovea
    for args, msg in [
        ((IMG, G, -5, SIZES, 1.0, 1.0, 0), "num_tokens"),
        ((IMG, G, 512, (1, 1), 1.0, 1.0, 0), "twice"),
        ((IMG, G, 512, (), 1.0, 1.0, 0), "entries"),
        ((IMG, G, 512, (2000,), 1.0, 1.0, 0), "range"),
        ((IMG, G, 512, ("a",), 1.0, 1.0, 0), "integer"),
        ((IMG, G, 512, SIZES, float("nan"), 1.0, 0), "tau"),
        ((IMG, G, 512, SIZES, 1.0, 0.0, 0), "coverage"),
        ((IMG, G, 512, SIZES, 1.0, 1.0, -3), "seed"),
        ((IMG, "abcdef", 512, SIZES, 1.0, 1.0, 0), "not a number"),
    ]:
        with pytest.raises(S.SamplerError, match=msg):
            F.sample_patches(*args, "exact")
    with pytest.raises(S.SamplerError, match="same length"):
        F.place_patches(IMG, SIZES, (1, 2), [np.zeros((1, 2))], 0.0)
    with pytest.raises(S.SamplerError, match=r"\(K, 6\)"):
        F.sample_patches_many(IMG, np.zeros((3, 5)), 512, SIZES, 1.0, 1.0, np.zeros(3, np.uint64), "exact")
    with pytest.raises(S.SamplerError, match="tau"):
        F.place_patches(IMG, (4,), (1,), [np.zeros((1, 2))], -1.0)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_tiny_images_still_sample(backend):
    # 3×3 is the smallest image: only p = 1 fits, and the whole budget goes to it
    img = np.full((3, 3, 3), 7, np.uint8)
    ps = S.sample_patches(img, (1, 1, 3, 3, 0, 1), 64, SIZES, 100.0, 1.0, seed=0, backend=backend)
    assert ps.counts[1:] == [0, 0, 0, 0]
    assert 0 < ps.counts[0] <= 64
    # centres of accepted p=1 patches satisfy 0.5 ≤ c < 1.5 (1-px margin), and values are exact
    assert (ps.patches[0] == 7).all()


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_mask_bad_input(backend):
    m = np.zeros((40, 40), np.uint8)
    m[10:20, 10:20] = 1
    good = (15, 15, 3, 3, 0, 1)
    cases = [
        (dict(mask=m.astype(np.int32)), "dtype"),
        (dict(mask=np.zeros((40, 40, 3), np.uint8)), "2-D"),
        (dict(mask=m[:, ::2]), "C-contiguous"),
        (dict(mask=np.zeros((0, 5), np.uint8)), "empty"),
        (dict(group_counts=(1, 2, 3)), "exactly 7"),
        (dict(group_counts=(1,) * 8), "exactly 7"),
        (dict(group_counts=(1, 1, 1, -1, 1, 1, 1)), "group count"),
        (dict(g_px6=(np.nan, 15, 3, 3, 0, 1)), "NaN"),
        (dict(g_px6=(15, 15, 0, 3, 0, 1)), "> 0"),
        (dict(g_px6=(500, 500, 3, 3, 0, 1)), "does not intersect"),
        (dict(seed=-2), "seed"),
    ]
    for kw, msg in cases:
        args = dict(mask=m, g_px6=good, group_counts=(2,) * 7, seed=0)
        args.update(kw)
        with pytest.raises(S.SamplerError, match=msg):
            S.sample_mask_pixels(backend=backend, **args)


def test_mask_bad_input_in_c_directly():
    F = S._fovea
    m = np.zeros((40, 40), np.uint8)
    for args, msg in [
        ((m.astype(np.float64), (15, 15, 3, 3, 0, 1), (2,) * 7, 0), "dtype"),
        ((m, (15, 15, 3, 3, 0, 1), (2,) * 6, 0), "exactly 7"),
        ((m, (15, 15, 3, 3, 0, 1), (2, 2, 2, 2, 2, 2, 10**7), 0), "group counts"),
        ((m, (15, 15, -3, 3, 0, 1), (2,) * 7, 0), "> 0"),
        ((np.zeros((1, 1), np.uint8), (0, 0, 1, 1, 0, 1), (2,) * 7, 0), "no inside"),
    ]:
        with pytest.raises(S.SamplerError, match=msg):
            F.sample_mask_pixels(*args)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_other_entry_points_bad_input(backend):
    with pytest.raises(S.SamplerError):
        S.sample_num_tokens(0, 100, 50, 70, backend=backend)
    with pytest.raises(S.SamplerError):
        S.sample_num_tokens(0, 32, 2048, 32, backend=backend)
    with pytest.raises(S.SamplerError, match="NaN"):
        S.augment_position([0, 0, np.nan, 1, 0, 1], 0, backend=backend)
    with pytest.raises(S.SamplerError, match="> 0"):
        S.augment_position([0, 0, 0, 1, 0, 1], 0, backend=backend)
    with pytest.raises(S.SamplerError):
        S.allocate_counts(0, 1, backend=backend)
    with pytest.raises(ValueError, match="backend"):
        S.sample_num_tokens(0, backend="fortran")
