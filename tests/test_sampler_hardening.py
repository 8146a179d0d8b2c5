"""The C module trusts no caller (docs/sampler.md): every entry point of flip._fovea, called directly with
out-of-contract arguments, raises SamplerError instead of writing out of bounds or returning NaN/inf."""
import numpy as np
import pytest

from flip import sampler as S

pytestmark = pytest.mark.skipif(S._fovea is None, reason="C extension flip._fovea not built")
F = S._fovea

MASK = np.zeros((40, 40), np.uint8)
MASK[10:20, 10:20] = 1
G = (15.0, 15.0, 3.0, 3.0, 0.0, 1.0)


@pytest.mark.parametrize("n", [0, 1, 6, 8, 9, 16, 63, 64, 65, 1000])
def test_mask_sampler_rejects_wrong_group_count_length_itself(n):
    # 8–64 entries used to be parsed into a 7-entry array (AddressSanitizer: stack-buffer-overflow)
    with pytest.raises(S.SamplerError, match="exactly 7"):
        F.sample_mask_pixels(MASK, G, (3,) * n, 0)
    with pytest.raises(S.SamplerError, match="exactly 7"):
        F.sample_mask_pixels(MASK, G, np.full(n, 3, np.int64), 0)


def test_mask_sampler_rejects_non_sequences_and_still_works():
    for bad in (None, 7, 3.5, object()):
        with pytest.raises(S.SamplerError, match="sequence"):
            F.sample_mask_pixels(MASK, G, bad, 0)
    labels, coords = F.sample_mask_pixels(MASK, G, (2,) * 7, 0)
    assert labels.shape == (14,) and coords.shape == (14, 2) and np.isfinite(coords).all()


EXTREME = [1e300, -1e300, 1e200, 1e7, -1e7, 1.7e308]


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("slot", range(6))
@pytest.mark.parametrize("value", EXTREME)
def test_augment_position_rejects_extreme_finite_inputs(backend, slot, value):
    pos = [0.1, -0.2, 0.05, 0.02, 0.6, 0.8]
    pos[slot] = abs(value) if slot in (2, 3) else value
    with pytest.raises(S.SamplerError, match="out of range"):
        S.augment_position(pos, 0, backend=backend)
    if backend == "c":
        with pytest.raises(S.SamplerError, match="out of range"):
            F.augment_position(pos, 0)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_augment_position_is_finite_over_the_whole_accepted_range(backend):
    rng = np.random.default_rng(0)
    for k in range(300):
        mag = 10.0 ** rng.uniform(-300, 6, 6)  # from subnormal-adjacent to the 1e6 limit
        pos = mag * rng.choice([-1.0, 1.0], 6)
        pos[2:4] = np.abs(pos[2:4])
        if pos[4] ** 2 + pos[5] ** 2 <= 1e-24:
            pos[5] = 1.0
        out = S.augment_position(pos, k, backend=backend)
        assert np.isfinite(out).all(), (pos, out)
    with pytest.raises(S.SamplerError, match="direction"):
        S.augment_position([0, 0, 1, 1, 0, 0], 0, backend=backend)


def test_other_entry_points_reject_out_of_contract_calls():
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(S.SamplerError, match="too large"):
        F.boundary_distance(np.zeros((1, 2**20 + 1), np.uint8))
    with pytest.raises(S.SamplerError, match="range"):
        F.authors_rng(0, -1, "normal")
    with pytest.raises(S.SamplerError, match="kind"):
        F.authors_rng(0, 3, "gamma")
    with pytest.raises(S.SamplerError, match="2\\*\\*32"):
        F.authors_rng(2**32, 3, "kiss")
    with pytest.raises(S.SamplerError, match="range"):
        F.authors_extract(img, np.zeros((1, 2), np.float32), 0)
    with pytest.raises(S.SamplerError, match="leaves"):
        F.authors_extract(img, np.array([[np.nan, 5]], np.float32), 2)
    with pytest.raises(S.SamplerError, match="entries"):
        F.sample_patches(img, G, 8, tuple(range(1, 18)), 1.0, 1.0, 0, "authors")  # 17 sizes > the 16-entry arrays
    with pytest.raises(S.SamplerError, match="entries"):
        F.place_patches(img, tuple(range(1, 18)), (1,) * 17, [np.zeros((1, 2))] * 17, 0.0)
    with pytest.raises(S.SamplerError, match="n out of range"):
        F.draw_gaussian(G, -1, 0)
    with pytest.raises(S.SamplerError):
        F.allocate_counts(1.0, 1.0, 512, (1, 2), float("inf"))
    with pytest.raises(S.SamplerError):
        F.sample_num_tokens(0, 32, 2048, float("nan"))
